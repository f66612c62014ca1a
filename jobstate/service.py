"""The job service: validates, serialises per job, commits, then publishes.

Every change runs under its job's shard lock: read (cached) → `domain.apply` → version-checked
commit; the store hands every committed event to the hub from its commit loop, in commit
order, so one job's events reach the hub in version order. A lost version check (another
replica wrote first) re-applies the change to fresh state in the store's transaction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from jobstate import domain
from jobstate.domain import Change, EventType, Job, JobEvent
from jobstate.errors import Internal, InvalidArgument, JobStateError, NotFound
from jobstate.hub import Hub
from jobstate.locks import ShardedLocks
from jobstate.store import JobQuery, Store
from jobstate.wire import DEFAULT_PAGE_SIZE, IDEMPOTENCY_WINDOW, MAX_PAGE_SIZE

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobService:
    def __init__(
        self,
        store: Store,
        hub: Hub,
        locks: ShardedLocks | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.hub = hub
        self.locks = locks or ShardedLocks()
        self._clock = clock

    async def create(
        self,
        job_id: str,
        user_id: str,
        kind: str,
        params: dict[str, Any],
        idempotency_key: str = "",
    ) -> Job:
        """Create a job (PENDING, version 1), or return the one these arguments already made.

        Same user and idempotency_key within 24 h: the job the first call created, whichever
        replica made it (the database decides). Same job_id and user: the existing job.
        Another user's job_id: AlreadyExists.
        """
        now = self._clock()
        event = domain.new_job(
            job_id or uuid.uuid4().hex, user_id, kind, params, now, idempotency_key
        )
        # Only the job's own lock: a second lock from the same pool could be this one.
        async with self.locks.lock_for(event.job_id):
            outcome = await self.store.create(event, now - IDEMPOTENCY_WINDOW)
        return outcome.job if isinstance(outcome, JobEvent) else outcome

    async def get(self, job_id: str) -> Job:
        domain.validate_job_id(job_id)
        job = await self.store.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        return job

    async def list(self, query: JobQuery) -> tuple[list[Job], str]:
        if query.page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        size = min(query.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        if query.user_id:
            domain.validate_user_id(query.user_id)
        if query.idempotency_key:
            if not query.user_id:
                raise InvalidArgument("idempotency_key needs user_id")
            # Keys are remembered for the idempotency window only, as CreateJob honours them.
            query = dataclasses.replace(query, created_after=self._clock() - IDEMPOTENCY_WINDOW)
        return await self.store.list_jobs(dataclasses.replace(query, page_size=size))

    async def change(self, job_id: str, change: Change) -> Job:
        """Apply one change. Returns the job after it (unchanged when it restated the state).

        Raises InvalidArgument, NotFound, FailedPrecondition (finished job), Unavailable.
        """
        domain.validate_job_id(job_id)
        domain.validate_change(change)
        async with self.locks.lock_for(job_id):
            job = await self.store.get(job_id, cached=True)
            if job is None:
                raise NotFound(f"job {job_id} not found")
            now = self._clock()
            event = domain.apply(job, change, now)
            if event is None:
                # A change that changes nothing is answered from the stored job: another
                # replica may have moved it on (even finished it) since it was cached here.
                job = await self.store.reread(job)
                if job is None:
                    raise NotFound(f"job {job_id} not found")
                event = domain.apply(job, change, now)
            if event is None:
                return job
            # The store publishes what it commits (see Store.on_commit), even if this caller
            # is cancelled meanwhile.
            outcome = await self.store.update(event, job.version, change)
            return outcome.job if isinstance(outcome, JobEvent) else outcome

    async def change_many(self, changes: Sequence[tuple[str, Change]]) -> list[Job | JobStateError]:
        """Apply many changes: one outcome per change, in order — the job after it, or the
        domain error `change` would have raised. Changes to one job run in the order given;
        different jobs run concurrently, so their commits share transactions."""
        outcomes: list[Job | JobStateError] = [Internal("not applied")] * len(changes)
        by_job: dict[str, list[int]] = {}
        for index, (job_id, _) in enumerate(changes):
            by_job.setdefault(job_id, []).append(index)

        async def apply_in_order(indices: list[int]) -> None:
            for index in indices:
                job_id, change = changes[index]
                try:
                    outcomes[index] = await self.change(job_id, change)
                except JobStateError as exc:
                    outcomes[index] = exc
                except Exception:
                    log.exception("change %d of a batch (job %s) failed", index, job_id)
                    outcomes[index] = Internal("internal error; it has been logged")

        await asyncio.gather(*(apply_in_order(indices) for indices in by_job.values()))
        return outcomes

    async def watch(self, job_id: str, after_version: int = 0) -> AsyncIterator[JobEvent]:
        """The job's events in strictly increasing version order; ends after the terminal one.

        Subscribes before reading, so nothing committed between the read and the
        subscription is lost; live events at or below what was already sent are skipped.
        Starts with a SNAPSHOT when after_version is 0 or history no longer reaches back.
        """
        domain.validate_job_id(job_id)
        async with self.hub.subscribe(job_id) as sub:
            replay, last, finished = await self.replay(job_id, after_version)
            for item in replay:
                yield item
                last = item.version
            if finished:
                return
            while (item := await sub.next()) is not None:
                event, covers_from = item
                if event.version <= last:
                    continue
                # Versions the subscription did not coalesce away reached this process late or
                # not at all (another replica wrote them). They are committed — the next
                # version's write had to see them — so read them back.
                if covers_from > last + 1:
                    for missed in await self.history_between(job_id, last, covers_from):
                        yield missed
                yield event
                last = event.version
                if event.job.status.terminal:
                    return

    async def replay(
        self, job_id: str, after_version: int, user_id: str = ""
    ) -> tuple[list[JobEvent], int, bool]:
        """What a watcher from `after_version` is sent first: every event after it still in
        history, or a SNAPSHOT when that is 0 or history no longer reaches back; the version the
        watcher stands at before them; whether the job is finished. Subscribe first, so nothing
        committed meanwhile is lost. NotFound, also when `user_id` is given and the job is
        another user's (whose job it is stays unsaid)."""
        job, history = await self.store.get_with_events(job_id, after_version)
        if job is None or (user_id and job.user_id != user_id):
            raise NotFound(f"job {job_id} not found")
        replay = list(history)
        contiguous = [e.version for e in history] == list(range(after_version + 1, job.version + 1))
        if after_version == 0 or after_version > job.version or not contiguous:
            replay = [JobEvent(EventType.SNAPSHOT, job)]
        last = after_version if after_version <= job.version else 0
        return replay, last, job.status.terminal

    async def history_between(self, job_id: str, after: int, before: int) -> list[JobEvent]:
        """Committed events between two versions (what history still holds of them)."""
        _, events = await self.store.get_with_events(job_id, after)
        return [event for event in events if event.version < before]
