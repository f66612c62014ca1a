"""One shared WatchJob stream per watched job per gateway process, fanned out to sockets.

`WatchHub.join(job_id, watcher, after)` attaches a socket's `Watcher`; the first watcher of a
job opens the job's stream, the last one to `leave` closes it, and the hub ends empty. Each
event is serialised to JSON once for every watcher (`Event` caches both renderings). Every
watcher sees strictly increasing versions: it drops anything at or below the last version it
sent.

The shared stream always opens from 0, so its first event is a SNAPSHOT of the job: whatever
`after` the first socket brought, the stream knows the job's state and every socket without
`after` is greeted with a `status` at once (from the latest event, or from the SNAPSHOT when
it joined before that arrived). A socket with `after` gets the buffered recent events newer
than `after`, or — when `after` is older than the buffer — a private replay WatchJob from
`after` that runs until it reaches the shared stream's position, while live events are held
for it; the replay stream then ends, even if the job stays quiet. A replay that joins before
the SNAPSHOT waits for it, and needs no stream of its own when it has seen that version.

Streams are `jobstate.client` watches, which resume by themselves when the service goes away
(kill -9, restart) from the last version they yielded, with jittered back-off capped at 2 s,
and never yield a version twice: sockets stay open and miss nothing. A watch that ends with
an error closes its sockets with the code `errors.SERVICE_ANSWERS` gives (4404 for a job
that does not exist, 1013 when the service is at its stream cap). A watcher is closed with
1000 once its terminal message is sent (or at once, when its `after` already covers the
job's terminal event).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from contextlib import aclosing

from gateway.errors import report
from gateway.metrics import Metrics
from gateway.outbox import Outbox
from gateway.translate import dumps, event_message, status_message
from jobstate.client import EventType, JobEvent, JobStateClient, JobStateError

log = logging.getLogger(__name__)

RECENT_EVENTS = 256
MAX_BACKOFF = 2.0


class Event:
    """One watch event, serialised lazily and at most once per rendering."""

    __slots__ = ("_event_json", "_status_json", "record", "terminal", "version")

    def __init__(self, record: JobEvent) -> None:
        self.record = record
        self.version = record.version
        self.terminal = record.job.status.terminal
        self._event_json: str | None = None
        self._status_json: str | None = None

    @property
    def coalescible(self) -> bool:
        return self.record.type is EventType.PROGRESS and not self.terminal

    def event_json(self) -> str:
        if self._event_json is None:
            self._event_json = dumps(event_message(self.record))
        return self._event_json

    def status_json(self) -> str:
        if self._status_json is None:
            self._status_json = dumps(status_message(self.record.job))
        return self._status_json


class Watcher:
    """One socket's view of a job: the last version it was sent, and its outbox."""

    __slots__ = ("catch_up", "done", "held", "last_version", "needs_status", "outbox")

    def __init__(self, outbox: Outbox, after: int | None) -> None:
        self.outbox = outbox
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
        payload = event.status_json() if status else event.event_json()
        self.needs_status = False
        self.last_version = event.version
        self.outbox.push(payload, event.coalescible and not status)
        if event.terminal:
            self.finish(1000)

    def finish(self, code: int, reason: str = "") -> None:
        self.done = True
        self.outbox.close(code, reason)


class JobWatch:
    """The shared stream of one job and the watchers attached to it."""

    def __init__(self, hub: WatchHub, job_id: str) -> None:
        self.hub = hub
        self.job_id = job_id
        self.watchers: set[Watcher] = set()
        self.position = 0  # the last version the stream delivered
        self.floor = 0  # every event newer than this that the stream delivered is in `recent`
        self.latest: Event | None = None  # None until the stream's opening SNAPSHOT
        self.recent: deque[Event] = deque()
        self.waiting: set[Watcher] = set()  # replays that wait for the opening SNAPSHOT
        self.ended = False
        self.task = asyncio.get_running_loop().create_task(self._run())

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
        # there is: here the socket has reached the shared stream's position (or finished).
        held, watcher.held = watcher.held or [], None
        for event in held:
            watcher.send(event)

    def _publish(self, event: Event) -> None:
        self.position = event.version
        self.latest = event
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

    async def _run(self) -> None:
        self.hub.metrics.watch_streams.inc()
        try:
            await self._stream()
        finally:
            self.hub.metrics.watch_streams.dec()
            self.ended = True
            self.hub._forget(self)

    async def _stream(self) -> None:
        try:
            watch = self.hub.client.watch(self.job_id, max_backoff=MAX_BACKOFF)
            async with aclosing(watch) as records:
                async for record in records:
                    self._publish(Event(record))
        except JobStateError as exc:
            answer = report(f"watch of {self.job_id}", exc)
            self._close_all(answer.close_code, answer.reason)

    def _close_all(self, code: int, reason: str) -> None:
        for watcher in self.watchers:
            if not watcher.done:
                watcher.finish(code, reason)


class WatchHub:
    """Every shared job stream of this gateway process."""

    def __init__(self, client: JobStateClient, metrics: Metrics) -> None:
        self.client = client
        self.metrics = metrics
        self._watches: dict[str, JobWatch] = {}

    def __len__(self) -> int:
        return len(self._watches)

    def join(self, job_id: str, watcher: Watcher, after: int | None) -> None:
        """Attach `watcher`; its first message is a status (after=None) or the replay."""
        watch = self._watches.get(job_id)
        if watch is None or watch.ended:
            watch = JobWatch(self, job_id)
            self._watches[job_id] = watch
        watch.attach(watcher, after)

    def leave(self, job_id: str, watcher: Watcher) -> None:
        """Detach; the last watcher to leave ends the job's stream."""
        if watcher.catch_up is not None:
            watcher.catch_up.cancel()
        watch = self._watches.get(job_id)
        if watch is None or watcher not in watch.watchers:
            return
        watch.detach(watcher)
        if not watch.watchers:
            del self._watches[job_id]
            watch.task.cancel()

    def _forget(self, watch: JobWatch) -> None:
        if self._watches.get(watch.job_id) is watch:
            del self._watches[watch.job_id]

    async def close(self) -> None:
        watches = list(self._watches.values())
        self._watches.clear()
        for watch in watches:
            watch.task.cancel()
        await asyncio.gather(*(w.task for w in watches), return_exceptions=True)
