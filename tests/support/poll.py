"""Polling with a deadline: how these tests wait for something another task or process does."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

WAIT = 30.0  # a deadline for things that take milliseconds on a quiet machine; never a delay
INTERVAL = 0.02


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], what: str, *, within: float = WAIT
) -> None:
    """Call `check()` (plain or async) every 20 ms until it is true; AssertionError naming
    `what` after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(INTERVAL)
