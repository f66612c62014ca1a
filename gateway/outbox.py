"""One socket's writer: a queue of serialised messages drained by that socket's own task.

The fan-out never awaits a socket (aiohttp's `send_str` waits for the buffer to drain), it
only `push`es here, so a slow reader delays nobody else. A socket with >= 64 undelivered
messages loses intermediate progress messages, latest wins: a progress message replaces a
progress message at the tail of the queue. Status changes, terminal messages, pongs and the
close are never dropped, so the queue stays bounded by 64 plus a handful. Nothing is dropped
or delayed because of time.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

from gateway.metrics import Metrics

log = logging.getLogger(__name__)

COALESCE_AT = 64


class Socket(Protocol):
    """The part of aiohttp's WebSocketResponse the outbox uses."""

    @property
    def closed(self) -> bool: ...

    async def send_str(self, data: str, compress: int | None = None) -> None: ...

    async def close(
        self, *, code: int = 1000, message: bytes = b"", drain: bool = True
    ) -> bool: ...


class _Close:
    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class Outbox:
    """Queue + lazily started writer task for one socket. Not thread-safe (one event loop)."""

    __slots__ = ("_closing", "_metrics", "_queue", "_task", "_ws")

    def __init__(self, ws: Socket, metrics: Metrics) -> None:
        self._ws = ws
        self._metrics = metrics
        # Entries: (payload, coalescible) or a _Close, which is always last. None while idle:
        # an empty deque costs ~600 bytes, times every idle socket.
        self._queue: deque[tuple[str, bool] | _Close] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def __len__(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    def _pending(self) -> deque[tuple[str, bool] | _Close]:
        if self._queue is None:
            self._queue = deque()
        return self._queue

    @property
    def closing(self) -> bool:
        return self._closing

    def push(self, payload: str, coalescible: bool = False) -> None:
        """Queue a message; a coalescible (progress) one may replace the queued tail."""
        if self._closing:
            return
        queue = self._pending()
        if coalescible and len(queue) >= COALESCE_AT:
            tail = queue[-1]
            if isinstance(tail, tuple) and tail[1]:
                queue[-1] = (payload, True)
                self._metrics.messages_dropped.inc()
                return
        queue.append((payload, coalescible))
        self._metrics.messages_queued.inc()
        self._kick()

    def close(self, code: int, reason: str = "") -> None:
        """Close the socket with `code` after every message queued so far has been sent."""
        if self._closing:
            return
        self._closing = True
        self._pending().append(_Close(code, reason))
        self._kick()

    async def aclose(self) -> None:
        """Stop writing (the socket is gone); called by the socket's handler on exit."""
        self._closing = True
        if self._queue is not None:
            self._forget(self._queue)
        self._queue = None
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _forget(self, queue: deque[tuple[str, bool] | _Close]) -> None:
        self._metrics.messages_queued.dec(sum(isinstance(item, tuple) for item in queue))
        queue.clear()

    def _kick(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        queue, ws = self._pending(), self._ws
        try:
            while queue:
                item = queue.popleft()
                if isinstance(item, tuple):
                    self._metrics.messages_queued.dec()
                if isinstance(item, _Close):
                    await ws.close(code=item.code, message=item.reason.encode())
                    return
                if ws.closed:
                    self._forget(queue)
                    return
                await ws.send_str(item[0])
                self._metrics.messages_sent.inc()
        except ConnectionError:  # the peer went away; the handler cleans up
            self._forget(queue)
        finally:
            if self._task is asyncio.current_task():
                self._task = None
                if not queue and self._queue is queue:
                    self._queue = None
