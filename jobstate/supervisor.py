"""Keeps the process's background loops running and tells whether they all are.

A loop that raises is logged with its traceback, its clean-up runs (so nobody is left waiting
on it), and it is started again after a back-off that doubles up to a cap. From the failure to
the restart it counts as down, and `on_change(healthy)` hears each change of "every loop is
up" (the server turns it into grpc.health.v1 NOT_SERVING / SERVING).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Loop = Callable[[], Awaitable[None]]


class Supervisor:
    def __init__(
        self,
        on_change: Callable[[bool], Awaitable[None]] | None = None,
        *,
        first_delay: float = 0.1,
        max_delay: float = 5.0,
    ) -> None:
        self._on_change = on_change
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._down: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def healthy(self) -> bool:
        return not self._down

    def spawn(
        self, name: str, run: Loop, on_failure: Callable[[], None] | None = None
    ) -> asyncio.Task[None]:
        """Run `run()` in a task until it returns or the task is cancelled; restart it whenever
        it raises, after calling `on_failure()`. Cancelling the returned task stops it."""
        task = asyncio.create_task(self._keep_running(name, run, on_failure), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _keep_running(
        self, name: str, run: Loop, on_failure: Callable[[], None] | None
    ) -> None:
        loop = asyncio.get_running_loop()
        delay = self._first_delay
        while True:
            started = loop.time()
            try:
                await run()
                return
            except Exception:
                # A loop that ran for a while before failing starts again from the first delay.
                if loop.time() - started > self._max_delay:
                    delay = self._first_delay
                log.exception("%s failed; restarting it in %.1f s", name, delay)
            if on_failure is not None:
                on_failure()
            await self._set_down(name, True)
            await asyncio.sleep(delay)
            await self._set_down(name, False)
            delay = min(delay * 2, self._max_delay)

    async def _set_down(self, name: str, down: bool) -> None:
        was_healthy = self.healthy
        if down:
            self._down.add(name)
        else:
            self._down.discard(name)
        if self._on_change is not None and self.healthy != was_healthy:
            await self._on_change(self.healthy)

    async def close(self) -> None:
        """Stop every loop (cancelled) and wait until they have ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
