"""Polling with a deadline: how these tests wait for something another process does."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def until(check: Callable[[], Awaitable[bool]], *, within: float = 30.0, what: str) -> None:
    """Await `check()` every 50 ms until it is true; AssertionError naming `what` after
    `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.05)
