"""In-process fan-out of committed job events to watchers.

`async with hub.subscribe(job_id) as sub:` registers a bounded subscription; `publish(event)`
is called after each commit (under the job's lock, so events of one job arrive in version
order). A reference count removes a job's entry when its last watcher leaves.
`attach_user(user_id)` watches every job of a user (WatchJobs): one bounded subscription per
job, created by the job's first event, and one wake-up for all of them.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from jobstate.domain import EventType, JobEvent

BACKLOG = 64
# Jobs of watched users whose latest published version is remembered, to drop the copy of an
# event that arrives both locally and by NOTIFY (within milliseconds of each other).
SEEN_JOBS = 65_536


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


class UserSubscription:
    """Every job of one user: a `Subscription` (the same overflow policy) per job that had an
    event since it was attached, until `forget`. `ready()` waits for jobs with something to
    take; it returns None at once when closed (shutdown, or the relay lost notifications), as
    what is still queued may then be incomplete."""

    def __init__(self, user_id: str, backlog: int = BACKLOG) -> None:
        self.user_id = user_id
        self._backlog = backlog
        self._jobs: dict[str, Subscription] = {}
        self._dirty: dict[str, None] = {}  # insertion-ordered set
        self._ready = asyncio.Event()
        self._closed = False

    def push(self, event: JobEvent) -> None:
        sub = self._jobs.get(event.job_id)
        if sub is None:
            sub = self._jobs[event.job_id] = Subscription(event.job_id, self._backlog, self._mark)
        sub.push(event)

    def _mark(self, job_id: str) -> None:
        self._dirty[job_id] = None
        self._ready.set()

    def take(self, job_id: str) -> tuple[JobEvent, int] | None:
        """The job's oldest undelivered event and the first version it stands for, or None."""
        sub = self._jobs.get(job_id)
        return None if sub is None else sub.take()

    def forget(self, job_id: str) -> None:
        """Drop the job's queue (its next event starts a new one)."""
        self._jobs.pop(job_id, None)
        self._dirty.pop(job_id, None)

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        """Number of jobs with a queue."""
        return len(self._jobs)

    async def ready(self) -> list[str] | None:
        """The jobs with events to take, in the order they got them; waits for one. None
        once closed."""
        while not self._dirty:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        if self._closed:
            return None
        dirty = list(self._dirty)
        self._dirty.clear()
        return dirty


class Hub:
    """Fan-out by job id, and by user id to user watchers. Publishing is idempotent per
    version: an event at or below the latest version already published for that job is
    dropped, so events arriving both locally and from another replica (PostgreSQL NOTIFY)
    reach each watcher once (for jobs of watched users, while the job is among the SEEN_JOBS
    most recently published).
    """

    def __init__(self, backlog: int = BACKLOG) -> None:
        self._backlog = backlog
        self._subs: dict[str, set[Subscription]] = {}
        self._latest: dict[str, int] = {}
        self._users: dict[str, set[UserSubscription]] = {}
        self._seen: OrderedDict[str, int] = OrderedDict()  # jobs of watched users → latest
        # Set once other replicas' events reach this hub (see `expect_relay`).
        self._relayed = asyncio.Event()
        self._relayed.set()
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

    def attach_user(self, user_id: str) -> UserSubscription:
        """A subscription to every job of `user_id` until `detach_user`."""
        sub = UserSubscription(user_id, self._backlog)
        self._users.setdefault(user_id, set()).add(sub)
        if self._closed:
            sub.close()
        return sub

    def detach_user(self, sub: UserSubscription) -> None:
        subs = self._users.get(sub.user_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._users[sub.user_id]
                if not self._users:
                    self._seen.clear()

    def publish(self, event: JobEvent) -> None:
        job_id = event.job_id
        subs = self._subs.get(job_id)
        # Jobs nobody watches cost one lookup here, two while any user is watched.
        users = self._users.get(event.job.user_id) if self._users else None
        if (subs is None and users is None) or event.version <= self.latest(job_id):
            return
        if subs is not None:
            self._latest[job_id] = event.version
            for sub in subs:
                sub.push(event)
        if users is not None:
            self._seen[job_id] = event.version
            self._seen.move_to_end(job_id)
            if len(self._seen) > SEEN_JOBS:
                self._seen.popitem(last=False)
            for user in users:
                user.push(event)

    def watched(self, job_id: str) -> bool:
        return job_id in self._subs

    def watches_user(self, user_id: str) -> bool:
        return user_id in self._users

    @property
    def watches_users(self) -> bool:
        return bool(self._users)

    def expect_relay(self) -> None:
        """Other replicas write too (PostgreSQL): `relayed` waits until `relay_listening`."""
        self._relayed.clear()

    def relay_listening(self) -> None:
        self._relayed.set()

    async def relayed(self) -> None:
        """Returns once events of other replicas reach this hub (at once with no relay, or
        once closed). A user watch reads its initial state after that: nothing it could miss
        before is then missed, and the relay only ends user watches when it reconnects."""
        await self._relayed.wait()

    def end_user_watches(self) -> None:
        """Close every user subscription (their streams end cleanly and clients resume): the
        relay calls it when notifications may have been lost, as it cannot tell whose."""
        for subs in self._users.values():
            for sub in subs:
                sub.close()

    def latest(self, job_id: str) -> int:
        """The latest version published for a watched job (0: none remembered)."""
        return max(self._latest.get(job_id, 0), self._seen.get(job_id, 0))

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
        self.end_user_watches()
        self._relayed.set()

    def __len__(self) -> int:
        """Number of jobs and users with at least one watcher."""
        return len(self._subs) + len(self._users)
