"""Every watched job of this gateway process followed upstream once, fanned out to sockets.

All jobs travel on one `jobstate.client` feed (a FollowJobs stream): events that committed
together arrive in one message, instead of one message per job stream. `WatchHub.join(job_id,
watcher, after)` attaches a socket's `Watcher`; the first watcher of a job follows it, the last
one to `leave` unfollows it, and the hub ends empty. Each event is serialised once for every
watcher (`Event` caches the JSON and the WebSocket frame of both renderings). Every watcher sees
strictly increasing versions: it drops anything at or below the last version it sent.

A job is always followed from 0, so its first event is a SNAPSHOT of the job: whatever
`after` the first socket brought, the stream knows the job's state and every socket without
`after` is greeted with a `status` at once (from the latest event, or from the SNAPSHOT when
it joined before that arrived). A socket with `after` gets the buffered recent events newer
than `after`, or — when `after` is older than the buffer — a private replay WatchJob from
`after` that runs until it reaches the shared stream's position, while live events are held
for it; the replay stream then ends, even if the job stays quiet. A replay that joins before
the SNAPSHOT waits for it, and needs no stream of its own when it has seen that version.

The feed resumes by itself when the service goes away (kill -9, restart), following every job
again from the last version it yielded, with jittered back-off capped at 2 s, and never yields
a version twice: sockets stay open and miss nothing. A job the service will not follow closes
its sockets with the code `errors.SERVICE_ANSWERS` gives (4404 for a job that does not exist,
1013 when the service is at its cap); a feed that fails for good (a refused token, the
service's stream cap) closes every socket the same way, and the next join starts a new feed.
A watcher is closed with 1000 once its terminal message is sent (or at once, when its `after`
already covers the job's terminal event). The job's owner is known from its SNAPSHOT on, so
a later socket is admitted without asking the service (`owner`); the first socket starts the
follow and learns the owner from that SNAPSHOT (`learn_owner`) before it joins. A job started
through this gateway is followed at once (`expect`): the page that started it opens its socket
next, and finds the owner and the job's state here instead of waiting for that first answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from contextlib import aclosing

from gateway.errors import report
from gateway.frames import text_frame
from gateway.metrics import Metrics
from gateway.outbox import Outbox
from gateway.translate import dumps, event_message, status_message
from jobstate.client import (
    Ended,
    EventType,
    FeedItem,
    JobEvent,
    JobFeed,
    JobStateClient,
    JobStateError,
    Unavailable,
)

log = logging.getLogger(__name__)

RECENT_EVENTS = 256
MAX_BACKOFF = 2.0
# How long a job `expect` follows waits for its first socket before it is unfollowed.
EXPECT_SOCKET_WITHIN = 10.0


class Event:
    """One watch event, serialised lazily and at most once per rendering: the JSON text and
    the WebSocket frame carrying it (the same bytes for every socket)."""

    __slots__ = ("_event", "_status", "record", "terminal", "version")

    def __init__(self, record: JobEvent) -> None:
        self.record = record
        self.version = record.version
        self.terminal = record.job.status.terminal
        self._event: tuple[str, bytes] | None = None
        self._status: tuple[str, bytes] | None = None

    @property
    def coalescible(self) -> bool:
        return self.record.type is EventType.PROGRESS and not self.terminal

    def event_message(self) -> tuple[str, bytes]:
        if self._event is None:
            text = dumps(event_message(self.record))
            self._event = (text, text_frame(text))
        return self._event

    def status_message(self) -> tuple[str, bytes]:
        if self._status is None:
            text = dumps(status_message(self.record.job))
            self._status = (text, text_frame(text))
        return self._status


class Watcher:
    """One socket's view of a job: the last version it was sent, and its outbox. `key` is the
    outbox's coalescing key of its messages (the job, on a socket that carries many)."""

    __slots__ = ("catch_up", "done", "held", "key", "last_version", "needs_status", "outbox")

    def __init__(self, outbox: Outbox, after: int | None, key: str = "") -> None:
        self.outbox = outbox
        self.key = key
        self.last_version = after or 0
        self.needs_status = after is None
        self.held: list[Event] | None = None  # live events held while its replay runs
        self.catch_up: asyncio.Task[None] | None = None
        self.done = False

    def offer(self, event: Event) -> None:
        if self.held is not None:
            self.held.append(event)
        else:
            self.send(event)

    def send(self, event: Event, *, as_status: bool = False) -> None:
        if self.done:
            return
        if event.version <= self.last_version:
            if event.terminal:  # its `after` covers the job's last event: nothing will follow
                self.finish(1000)
            return
        status = as_status or self.needs_status
        text, frame = event.status_message() if status else event.event_message()
        self.needs_status = False
        self.last_version = event.version
        self.outbox.push(text, event.coalescible and not status, frame, self.key)
        if event.terminal:
            self.finish(1000)

    def finish(self, code: int, reason: str = "") -> None:
        """The watch is over: after the terminal event (1000) or refused (a close code);
        this closes the socket."""
        self.done = True
        self.outbox.close(code, reason)


class JobWatch:
    """One followed job and the watchers attached to it."""

    def __init__(self, hub: WatchHub, job_id: str) -> None:
        self.hub = hub
        self.job_id = job_id
        self.watchers: set[Watcher] = set()
        self.position = 0  # the last version the feed delivered
        self.floor = 0  # every event newer than this that the feed delivered is in `recent`
        self.latest: Event | None = None  # None until the job's opening SNAPSHOT
        self.recent: deque[Event] = deque()
        self.waiting: set[Watcher] = set()  # replays that wait for the opening SNAPSHOT
        self.known: asyncio.Future[str] | None = None  # the owner, for `learn_owner`
        self.lookups = 0  # sockets waiting for `known`
        self.expected: asyncio.TimerHandle | None = None  # `expect`: until a socket joins

    def unexpect(self) -> None:
        if self.expected is not None:
            self.expected.cancel()
            self.expected = None

    def fail_lookups(self, error: JobStateError) -> None:
        if self.known is not None and not self.known.done():
            self.known.set_exception(error)
            self.known.exception()  # retrieved: every asker may have gone already

    @property
    def owner(self) -> str | None:
        """The job's user, once its SNAPSHOT arrived."""
        return None if self.latest is None else self.latest.record.job.user_id

    def attach(self, watcher: Watcher, after: int | None) -> None:
        self.watchers.add(watcher)
        if self.latest is None:
            if after is not None:
                self.waiting.add(watcher)
            return  # else the opening SNAPSHOT reaches it as a status message
        if after is None:
            watcher.send(self.latest, as_status=True)
        elif after >= self.floor:
            for event in self.recent:
                watcher.send(event)
        else:
            self._replay(watcher)

    def detach(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)
        self.waiting.discard(watcher)

    def _replay(self, watcher: Watcher) -> None:
        watcher.held = []
        replay = self._catch_up(watcher, watcher.last_version)
        watcher.catch_up = asyncio.get_running_loop().create_task(replay)

    async def _catch_up(self, watcher: Watcher, after: int) -> None:
        self.hub.metrics.watch_replays.inc()
        try:
            async with aclosing(self.hub.client.watch(self.job_id, after)) as records:
                async for record in records:
                    watcher.send(Event(record))
                    if watcher.done or watcher.last_version >= self.position:
                        break
        except JobStateError as exc:
            answer = report(f"catch-up watch of {self.job_id}", exc)
            watcher.finish(answer.close_code, answer.reason)
            return
        finally:
            self.hub.metrics.watch_replays.dec()
        # The watch ends by itself only after the job's terminal event, which is the newest
        # there is: here the socket has reached the feed's position (or finished).
        held, watcher.held = watcher.held or [], None
        for event in held:
            watcher.send(event)

    def publish(self, event: Event) -> None:
        self.position = event.version
        self.latest = event
        if self.known is not None and not self.known.done():
            self.known.set_result(event.record.job.user_id)
        if event.record.type is EventType.SNAPSHOT:
            self.recent.clear()
            self.floor = event.version
        else:
            self.recent.append(event)
            if len(self.recent) > RECENT_EVENTS:
                self.floor = self.recent.popleft().version
        waiting, self.waiting = self.waiting, set()
        for watcher in waiting:
            # Only versions it has not seen need a replay; the rest it gets from here on.
            if watcher.last_version < event.version:
                self._replay(watcher)
        for watcher in list(self.watchers):
            watcher.offer(event)

    def close_all(self, code: int, reason: str) -> None:
        for watcher in self.watchers:
            if not watcher.done:
                watcher.finish(code, reason)


class WatchHub:
    """Every watched job of this gateway process, on one feed."""

    def __init__(
        self,
        client: JobStateClient,
        metrics: Metrics,
        expect_within: float = EXPECT_SOCKET_WITHIN,
    ) -> None:
        self.client = client
        self.metrics = metrics
        self._expect_within = expect_within
        self._watches: dict[str, JobWatch] = {}
        self._feed: JobFeed | None = None
        self._pump: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._watches)

    def owner(self, job_id: str) -> str | None:
        """The user of a job this gateway already follows (None: not known here yet)."""
        watch = self._watches.get(job_id)
        return None if watch is None else watch.owner

    def watchers(self, job_id: str) -> int:
        """How many sockets watch the job here."""
        watch = self._watches.get(job_id)
        return 0 if watch is None else len(watch.watchers)

    def expect(self, job_id: str) -> None:
        """A socket for the job is likely soon (its owner just started it here): follow it
        now, so that the socket finds the owner and the job's state waiting. Unfollowed after
        `expect_within` seconds if no socket joined by then; the first one that joins takes
        the follow over (it ends with the last socket, as any)."""
        watch = self._watches.get(job_id) or self._start(job_id)
        if watch.expected is None and not watch.watchers:
            watch.expected = asyncio.get_running_loop().call_later(
                self._expect_within, self._no_socket_came, watch
            )

    def _no_socket_came(self, watch: JobWatch) -> None:
        watch.expected = None
        self._drop_if_unused(watch)

    async def learn_owner(self, job_id: str) -> str:
        """The job's user: known from its stream, else from the SNAPSHOT of the follow started
        here for the asking — one round trip, where a GetJob and then the follow took two.
        Raises what the service ends the follow with (`NotFound`, …). A follow nobody joins
        once the asking is over is dropped."""
        watch = self._watches.get(job_id) or self._start(job_id)
        if watch.owner is not None:
            return watch.owner
        if watch.known is None:
            watch.known = asyncio.get_running_loop().create_future()
        watch.lookups += 1
        try:
            # One socket leaving (closed while it waits) does not cancel the others' answer.
            return await asyncio.shield(watch.known)
        finally:
            watch.lookups -= 1
            # After the asker's own turn, in which an admitted socket joins.
            asyncio.get_running_loop().call_soon(self._drop_if_unused, watch)

    def join(self, job_id: str, watcher: Watcher, after: int | None) -> None:
        """Attach `watcher`; its first message is a status (after=None) or the replay."""
        watch = self._watches.get(job_id) or self._start(job_id)
        watch.unexpect()
        watch.attach(watcher, after)

    def _start(self, job_id: str) -> JobWatch:
        watch = JobWatch(self, job_id)
        self._watches[job_id] = watch
        self.metrics.watch_streams.inc()
        self._followed().follow(job_id)
        return watch

    def _drop_if_unused(self, watch: JobWatch) -> None:
        unused = not watch.watchers and not watch.lookups and watch.expected is None
        if unused and self._watches.get(watch.job_id) is watch:
            self._forget(watch)
            if self._feed is not None:
                self._feed.unfollow(watch.job_id)

    def leave(self, job_id: str, watcher: Watcher) -> None:
        """Detach; the last watcher to leave unfollows the job."""
        if watcher.catch_up is not None:
            watcher.catch_up.cancel()
        watch = self._watches.get(job_id)
        if watch is None or watcher not in watch.watchers:
            return
        watch.detach(watcher)
        self._drop_if_unused(watch)

    def _followed(self) -> JobFeed:
        if self._feed is None:
            self._feed = self.client.feed(params=False, max_backoff=MAX_BACKOFF)
            self._pump = asyncio.get_running_loop().create_task(self._run(self._feed))
        return self._feed

    async def _run(self, feed: JobFeed) -> None:
        try:
            async for batch in feed:
                self._deliver(batch)
        except JobStateError as exc:
            # The feed cannot go on (e.g. a refused token, the service's stream cap): every
            # socket hears it, and the next join starts a new feed.
            answer = report("the job feed", exc)
            for watch in list(self._watches.values()):
                watch.close_all(answer.close_code, answer.reason)
                self._forget(watch)
        finally:
            if self._feed is feed:
                self._feed = None

    def _deliver(self, batch: list[FeedItem]) -> None:
        for item in batch:
            watch = self._watches.get(item.job_id)
            if watch is None:
                continue
            if isinstance(item, Ended):
                # After the terminal event its watchers are already finishing; otherwise
                # the service refused the job.
                if item.error is not None:
                    watch.fail_lookups(item.error)  # the asking learns why
                    answer = report(f"watch of {item.job_id}", item.error)
                    watch.close_all(answer.close_code, answer.reason)
                self._forget(watch)
            else:
                watch.publish(Event(item))

    def _forget(self, watch: JobWatch) -> None:
        watch.unexpect()
        watch.fail_lookups(Unavailable("the job's stream ended; try again"))
        if self._watches.get(watch.job_id) is watch:
            del self._watches[watch.job_id]
            self.metrics.watch_streams.dec()

    async def close(self) -> None:
        for watch in list(self._watches.values()):
            self._forget(watch)
        self.metrics.watch_streams.set(0)
        feed, pump = self._feed, self._pump
        self._feed = self._pump = None
        if feed is not None:
            feed.close()
        if pump is not None:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
