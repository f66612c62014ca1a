"""One socket's writer: a queue of serialised messages drained by that socket's own task.

The fan-out never awaits a socket (aiohttp's `send_str` waits for the buffer to drain), it only
`push`es here, so a slow reader delays nobody else. A socket that keeps up — nothing queued,
its transport's buffer nearly empty — is written at once, the ready-made frame handed to its
transport (NOTE: measured under the fan-out bench, the queue, the writer task and aiohttp's
send path cost ~25 µs per message per socket; one `transport.write` a few). Only a socket that
falls behind gets the queue and a writer task. A socket with >= 64 undelivered messages loses
intermediate progress messages, latest wins: a progress message replaces the last queued
message with the same `key` (its job on a multiplexed socket) when that one is a progress
message too, in its place, so one job's messages stay in version order and another job's never
replace it. Status changes, terminal messages and the close are never dropped. A socket holds
at most one pending pong: a ping that finds one queued is answered by it, so a client that
sends pings and never reads cannot grow the queue (and its pings keep aiohttp's heartbeat from
ever timing it out). Together these keep a queue near 64 messages; past a hard cap (MAX_QUEUED
messages or MAX_QUEUED_BYTES) the socket is closed with 1008 at once and its queue dropped.
Nothing is dropped or delayed because of time.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

from gateway.metrics import Metrics

log = logging.getLogger(__name__)

COALESCE_AT = 64
MAX_QUEUED = 1024
MAX_QUEUED_BYTES = 1024 * 1024  # messages are ASCII JSON: characters are bytes
CLOSE_OVERFLOW = 1008
# A peer that reads nothing cannot take a close frame either: its close is given up then.
CLOSE_TIMEOUT = 5.0
# Bytes a transport may hold unsent and still be written to directly; past it the socket's
# messages queue (and coalesce) instead of piling up in the transport.
DIRECT_WRITE_LIMIT = 16 * 1024
PONG = '{"type":"pong"}'


class _Message:
    """A queued message; `payload` is replaced in place when a newer progress of its key
    coalesces into it."""

    __slots__ = ("coalescible", "key", "payload")

    def __init__(self, payload: str, coalescible: bool, key: str) -> None:
        self.payload = payload
        self.coalescible = coalescible
        self.key = key


class Socket(Protocol):
    """The part of aiohttp's WebSocketResponse the outbox uses."""

    @property
    def closed(self) -> bool: ...

    async def send_str(self, data: str, compress: int | None = None) -> None: ...

    async def close(
        self, *, code: int = 1000, message: bytes = b"", drain: bool = True
    ) -> bool: ...


class Outbox:
    """Queue + lazily started writer task for one socket. Not thread-safe (one event loop)."""

    __slots__ = (
        "_bytes",
        "_close",
        "_closing",
        "_last",
        "_metrics",
        "_pong_queued",
        "_queue",
        "_task",
        "_transport",
        "_ws",
    )

    def __init__(
        self, ws: Socket, metrics: Metrics, transport: asyncio.Transport | None = None
    ) -> None:
        """`transport` (the socket's connection) takes ready-made frames while the socket
        keeps up, and is aborted when a socket closed for not reading does not take its
        close frame either."""
        self._ws = ws
        self._metrics = metrics
        self._transport = transport
        # None while idle: an empty deque costs ~600 bytes, times every idle socket.
        self._queue: deque[_Message] | None = None
        self._last: dict[str, _Message] = {}  # the newest queued message of each key
        self._bytes = 0
        self._pong_queued = False
        self._close: tuple[int, str] | None = None  # sent once the queue is empty
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    def push(
        self, payload: str, coalescible: bool = False, frame: bytes | None = None, key: str = ""
    ) -> None:
        """Send a message: at once when the socket keeps up and `frame` (the message as a
        WebSocket frame) is given, else queued; a coalescible (progress) one may replace the
        newest queued message of the same `key`."""
        if self._closing:
            return
        queue = self._queue
        if (
            frame is not None
            and queue is None
            and self._task is None
            and (transport := self._keeping_up()) is not None
        ):
            transport.write(frame)
            self._metrics.sent += 1
            return
        if coalescible and queue is not None and len(queue) >= COALESCE_AT:
            newest = self._last.get(key)
            if newest is not None and newest.coalescible:
                self._bytes += len(payload) - len(newest.payload)
                newest.payload = payload
                self._metrics.messages_dropped.inc()
                self._within_caps()
                return
        self._append(_Message(payload, coalescible, key))

    def pong(self) -> None:
        """Answer a ping, unless a pong is still queued: that one answers this ping too."""
        if self._closing or self._pong_queued:
            return
        self._pong_queued = True
        self._append(_Message(PONG, False, ""))

    def close(self, code: int, reason: str = "") -> None:
        """Close the socket with `code` after every message queued so far has been sent."""
        if self._closing:
            return
        self._closing = True
        self._close = (code, reason)
        self._kick()

    async def aclose(self) -> None:
        """Stop writing (the socket is gone); called by the socket's handler on exit."""
        self._closing = True
        self._drop()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _keeping_up(self) -> asyncio.Transport | None:
        """The socket's transport when frames may be written to it directly, else None."""
        transport = self._transport
        if (
            transport is not None
            and not transport.is_closing()
            and not self._ws.closed
            and transport.get_write_buffer_size() <= DIRECT_WRITE_LIMIT
        ):
            return transport
        return None

    def _append(self, item: _Message) -> None:
        if self._queue is None:
            self._queue = deque()
        self._queue.append(item)
        self._last[item.key] = item
        self._bytes += len(item.payload)
        self._metrics.queued += 1
        if self._within_caps():
            self._kick()

    def _within_caps(self) -> bool:
        """True while under both hard caps; past one, the socket is being closed with 1008."""
        if len(self) <= MAX_QUEUED and self._bytes <= MAX_QUEUED_BYTES:
            return True
        log.warning(
            "closing a socket that does not read: %d messages (%d bytes) undelivered",
            len(self),
            self._bytes,
        )
        self._metrics.overflow_closes.inc()
        self._closing = True
        self._drop()
        stuck, self._task = self._task, None
        self._task = asyncio.get_running_loop().create_task(self._close_now(stuck))
        return False

    def _drop(self) -> None:
        if self._queue is not None:
            self._metrics.queued -= len(self._queue)
        self._queue = None
        self._last.clear()
        self._bytes = 0
        self._pong_queued = False

    def _pop(self, queue: deque[_Message]) -> str:
        item = queue.popleft()
        if not queue:
            self._queue = None
        if self._last.get(item.key) is item:
            del self._last[item.key]
        self._bytes -= len(item.payload)
        self._metrics.queued -= 1
        if item.payload is PONG:
            self._pong_queued = False
        return item.payload

    def _kick(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        ws = self._ws
        try:
            while queue := self._queue:
                payload = self._pop(queue)
                if ws.closed:
                    self._drop()
                    return
                await ws.send_str(payload)
                self._metrics.sent += 1
            if self._close is not None:
                code, reason = self._close
                await ws.close(code=code, message=reason.encode())
        except ConnectionError:  # the peer went away; the handler cleans up
            self._drop()
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    async def _close_now(self, stuck: asyncio.Task[None] | None) -> None:
        """Close with 1008 now, whatever was queued. `stuck`, the writer blocked on a peer that
        does not read, is cancelled only afterwards: aiohttp's writes share one drain future,
        and cancelling a waiter cancels it for the close as well."""
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._ws.close(code=CLOSE_OVERFLOW, message=b"too many undelivered messages")
        except TimeoutError:
            # aiohttp's close of the transport waits for its buffer to drain, which a peer
            # that does not read never lets happen: the connection, and its handler, would stay.
            if self._transport is not None:
                self._transport.abort()
        finally:
            if stuck is not None:
                stuck.cancel()
                await asyncio.gather(stuck, return_exceptions=True)
            if self._task is asyncio.current_task():
                self._task = None
