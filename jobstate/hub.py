"""In-process fan-out of committed job events to watchers.

`async with hub.subscribe(job_id) as sub:` registers a bounded subscription; `publish(event)`
is called after each commit (under the job's lock, so events of one job arrive in version
order). A reference count removes a job's entry when its last watcher leaves.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from jobstate.domain import EventType, JobEvent

BACKLOG = 64


class Subscription:
    """One watcher's undelivered events, each with the first version it stands for.

    Overflow policy: while fewer than `backlog` events wait, every event is kept. From
    `backlog` on, a PROGRESS event that directly follows a PROGRESS event at the tail replaces
    it (latest wins), so the queue stays bounded while status changes and terminal events are
    never dropped. The watcher drains one event at a time, as fast as its stream accepts
    writes, so coalescing happens while the stream is blocked on a slow reader.
    """

    def __init__(
        self, job_id: str, backlog: int = BACKLOG, wake: Callable[[str], None] | None = None
    ) -> None:
        self.job_id = job_id
        self.dropped = 0
        self._backlog = backlog
        # Told the job id on every push and close: a reader of many subscriptions (a
        # FollowJobs stream) waits on one event of its own instead of one per job.
        self._wake = wake
        self._events: deque[tuple[JobEvent, int]] = deque()
        self._ready = asyncio.Event()
        self._closed = False

    def push(self, event: JobEvent) -> None:
        events = self._events
        if len(events) >= self._backlog and event.type is EventType.PROGRESS:
            tail, covers_from = events[-1]
            # Only an unbroken run merges: a gap may hide a status change from elsewhere.
            if tail.type is EventType.PROGRESS and event.version == tail.version + 1:
                events[-1] = (event, covers_from)
                self.dropped += 1
                return
        events.append((event, event.version))
        self._ready.set()
        if self._wake is not None:
            self._wake(self.job_id)

    def close(self) -> None:
        """Wake the reader for good: `next` returns what is left, then None."""
        self._closed = True
        self._ready.set()
        if self._wake is not None:
            self._wake(self.job_id)

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._events)

    def take(self) -> tuple[JobEvent, int] | None:
        """The oldest undelivered event and the first version it stands for, or None."""
        return self._events.popleft() if self._events else None

    async def next(self) -> tuple[JobEvent, int] | None:
        """The oldest undelivered event and the first version it stands for (versions from
        there up to the event's own were coalesced away); waits for one. None once closed.
        """
        while not self._events:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._events.popleft()


class Hub:
    """Fan-out by job id. Publishing is idempotent per version: an event at or below the
    latest version already published for that job is dropped, so events arriving both
    locally and from another replica (PostgreSQL NOTIFY) reach each watcher once.
    """

    def __init__(self, backlog: int = BACKLOG) -> None:
        self._backlog = backlog
        self._subs: dict[str, set[Subscription]] = {}
        self._latest: dict[str, int] = {}
        self._closed = False

    @asynccontextmanager
    async def subscribe(self, job_id: str) -> AsyncIterator[Subscription]:
        sub = self.attach(job_id)
        try:
            yield sub
        finally:
            self.detach(sub)

    def attach(self, job_id: str, wake: Callable[[str], None] | None = None) -> Subscription:
        """A subscription to `job_id` until `detach`; `wake(job_id)` is called on every push."""
        sub = Subscription(job_id, self._backlog, wake)
        self._subs.setdefault(job_id, set()).add(sub)
        if self._closed:
            sub.close()
        return sub

    def detach(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.job_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.job_id]
                self._latest.pop(sub.job_id, None)

    def publish(self, event: JobEvent) -> None:
        subs = self._subs.get(event.job_id)
        if not subs or event.version <= self._latest.get(event.job_id, 0):
            return
        self._latest[event.job_id] = event.version
        for sub in subs:
            sub.push(event)

    def watched(self, job_id: str) -> bool:
        return job_id in self._subs

    def latest(self, job_id: str) -> int:
        return self._latest.get(job_id, 0)

    def watched_jobs(self) -> dict[str, int]:
        """Every watched job with the latest version published for it (0: none yet)."""
        return {job_id: self._latest.get(job_id, 0) for job_id in self._subs}

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Shutting down: end every subscription (streams then finish cleanly)."""
        self._closed = True
        for subs in self._subs.values():
            for sub in subs:
                sub.close()

    def __len__(self) -> int:
        """Number of jobs with at least one watcher."""
        return len(self._subs)
