"""One FollowJobs stream: a changing set of followed jobs, drained into batched messages.

Per job the rules of `JobService.watch` hold exactly — subscribe first, then the replay (or a
SNAPSHOT), then live events above what was sent, gaps another replica left read back from
history, the end after the terminal event — but every job feeds one wake-up and one writer,
so events that committed together leave in one message instead of one message per job.

`Follower.follow`/`unfollow` change the set (called by the request reader); `batches()` yields
what to send, waiting while nothing is pending. Nothing here blocks on a slow reader: each
job's hub subscription coalesces PROGRESS while the writer waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from jobstate import domain
from jobstate.domain import JobEvent
from jobstate.errors import JobStateError, ResourceExhausted
from jobstate.hub import Hub, Subscription
from jobstate.service import JobService

log = logging.getLogger(__name__)

MAX_FOLLOWED_JOBS = 10_000
# Events per message: without params an event is ~150 bytes; params (up to 64 KiB each) make
# the cap small enough to stay far under gRPC's message limits.
MAX_EVENTS = 500
MAX_EVENTS_WITH_PARAMS = 32


@dataclass(eq=False)
class End:
    """A job the stream says nothing more about: code 0 (finished or unfollowed) or an error."""

    job_id: str
    error: JobStateError | None = None


# The Job fields a follow's events carry (None: all), kept for whoever encodes them.
Fields = frozenset[str] | None


@dataclass(eq=False)
class _Cursor:
    job_id: str
    sub: Subscription
    fields: Fields
    last: int = 0
    replay: list[JobEvent] | None = None  # None until the first read is done
    loader: asyncio.Task[None] | None = None


@dataclass
class Batch:
    events: list[tuple[JobEvent, Fields]] = field(default_factory=list)
    ends: list[End] = field(default_factory=list)
    limit: int = MAX_EVENTS  # lowered once an event carries params


class Follower:
    def __init__(self, service: JobService, hub: Hub) -> None:
        self._service = service
        self._hub = hub
        self._cursors: dict[str, _Cursor] = {}
        self._dirty: dict[str, None] = {}  # insertion-ordered set: jobs with something to send
        self._ends: list[End] = []
        self._wake = asyncio.Event()
        self._requests_done = False

    def __len__(self) -> int:
        return len(self._cursors)

    def follow(self, job_id: str, after_version: int, fields: Fields = None) -> None:
        """Start following `job_id` after `after_version`. Every follow ends with exactly one
        End; following a job again first ends its current follow (code 0)."""
        self._stop(job_id)
        try:
            domain.validate_job_id(job_id)
            if len(self._cursors) >= MAX_FOLLOWED_JOBS:
                raise ResourceExhausted(f"this stream already follows {MAX_FOLLOWED_JOBS} jobs")
        except JobStateError as exc:
            self.refuse(job_id, exc)
            return
        sub = self._hub.attach(job_id, self._mark)
        cursor = _Cursor(job_id, sub, fields, last=after_version)
        self._cursors[job_id] = cursor
        cursor.loader = asyncio.create_task(self._load(cursor, after_version))

    def refuse(self, job_id: str, error: JobStateError) -> None:
        """A follow request that cannot be taken: it ends at once with `error`."""
        self._stop(job_id)
        self._end(End(job_id, error))

    def unfollow(self, job_id: str) -> None:
        """End the current follow of `job_id` (code 0); nothing if it is not followed."""
        self._stop(job_id)

    def requests_done(self) -> None:
        """The client sends no more requests: the stream ends once every job has ended."""
        self._requests_done = True
        self._wake.set()

    def close(self) -> None:
        for job_id in list(self._cursors):
            self._drop(job_id)

    async def batches(self) -> AsyncIterator[Batch]:
        """What to send next, as soon as there is something; ends when the hub closes
        (shutdown) or the client is done and no job is left."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._hub.closed:
                return
            if self._ends:
                # Ends of follows that stopped before now travel ahead of any later event of
                # the same job (a restarted follow's first events included).
                ends, self._ends = self._ends, []
                self._wake.set()
                yield Batch(ends=ends)
                continue
            batch = Batch()
            while self._dirty and len(batch.events) < batch.limit:
                job_id = next(iter(self._dirty))
                del self._dirty[job_id]
                cursor = self._cursors.get(job_id)
                if cursor is not None:
                    await self._drain(cursor, batch)
            if self._dirty:
                self._wake.set()  # the rest goes in the next message
            if batch.events or batch.ends:
                yield batch
            if self._requests_done and not self._cursors and not self._ends:
                return

    async def _load(self, cursor: _Cursor, after_version: int) -> None:
        try:
            replay, last, finished = await self._service.replay(cursor.job_id, after_version)
        except JobStateError as exc:
            self._drop(cursor.job_id)
            self._end(End(cursor.job_id, exc))
            return
        cursor.last = last
        cursor.replay = replay
        if finished and not replay:  # nothing newer than after_version, and never will be
            self._drop(cursor.job_id)
            self._end(End(cursor.job_id))
            return
        self._mark(cursor.job_id)

    async def _drain(self, cursor: _Cursor, batch: Batch) -> None:
        """Move what `cursor` has to send into `batch`, ending the job after its terminal."""
        if cursor.replay is None:
            return  # still loading: _load marks it again when done
        pending, cursor.replay = cursor.replay, []
        last = pending[-1].version if pending else cursor.last
        while (item := cursor.sub.take()) is not None:
            event, covers_from = item
            if event.version <= last:
                continue
            if covers_from > last + 1:
                # Versions the subscription did not coalesce away reached this process late
                # (another replica wrote them; see JobService.watch): committed, so read back.
                pending += await self._service.history_between(cursor.job_id, last, covers_from)
            pending.append(event)
            last = event.version
        if cursor.fields is None or "params" in cursor.fields:
            batch.limit = MAX_EVENTS_WITH_PARAMS
        for event in pending:
            if event.version <= cursor.last:
                continue
            batch.events.append((event, cursor.fields))
            cursor.last = event.version
            if event.job.status.terminal:
                self._drop(cursor.job_id)
                batch.ends.append(End(cursor.job_id))
                return

    def _mark(self, job_id: str) -> None:
        self._dirty[job_id] = None
        self._wake.set()

    def _end(self, end: End) -> None:
        self._ends.append(end)
        self._wake.set()

    def _stop(self, job_id: str) -> None:
        if job_id in self._cursors:
            self._drop(job_id)
            self._end(End(job_id))

    def _drop(self, job_id: str) -> None:
        cursor = self._cursors.pop(job_id, None)
        self._dirty.pop(job_id, None)
        if cursor is None:
            return
        self._hub.detach(cursor.sub)
        if cursor.loader is not None and not cursor.loader.done():
            cursor.loader.cancel()
