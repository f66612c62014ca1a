"""One WatchJobs stream: every job of one user — its initial state, then live events.

Subscribes first (the hub's user subscription), then reads the initial state: a SNAPSHOT of
each of the newest MAX_INITIAL_JOBS of the user's jobs in the requested statuses, and the
replay of each job the client resumes (`after_versions`, as `JobService.replay`). Live events
follow with WatchJob's rules per job: versions above what was sent, gaps not made by
coalescing read back from history. Nothing here blocks on a slow reader: each job's queue in
the user subscription coalesces PROGRESS while the writer waits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from jobstate import domain
from jobstate.domain import InitialStateComplete, JobEvent, Status
from jobstate.errors import InvalidArgument, NotFound
from jobstate.hub import UserSubscription
from jobstate.service import JobService
from jobstate.store import JobQuery
from jobstate.wire import MAX_AFTER_VERSIONS, MAX_INITIAL_JOBS

UNFINISHED = (Status.PENDING, Status.PROCESSING)


@dataclass(slots=True)
class Batch:
    events: list[JobEvent] = field(default_factory=list)
    initial_state_complete: InitialStateComplete | None = None


class UserWatch:
    """Validates the request on construction (InvalidArgument); `batches(limit)` then yields
    what to send, at most `limit` events per batch, until the hub ends the user subscription
    (shutdown, or the relay lost notifications): the stream then ends cleanly."""

    def __init__(
        self,
        service: JobService,
        user_id: str,
        statuses: tuple[Status, ...],
        after_versions: Mapping[str, int],
    ) -> None:
        domain.validate_user_id(user_id)
        if len(after_versions) > MAX_AFTER_VERSIONS:
            raise InvalidArgument(
                f"after_versions has {len(after_versions)} entries; the limit is "
                f"{MAX_AFTER_VERSIONS}"
            )
        for job_id in after_versions:
            try:
                domain.validate_job_id(job_id)
            except InvalidArgument as exc:
                raise InvalidArgument(f"after_versions: {exc}") from None
        self._service = service
        self._user_id = user_id
        self._statuses = frozenset(statuses)
        self._after = dict(after_versions)
        # Jobs sent on this stream (initial state included) → the last version sent. A job
        # leaves when its terminal event is sent live; later copies of that event are dropped
        # by the hub, which remembers the versions it published.
        self._last: dict[str, int] = {}

    async def batches(self, limit: int) -> AsyncIterator[Batch]:
        hub = self._service.hub
        sub = hub.attach_user(self._user_id)
        try:
            await hub.relayed()
            if sub.closed:
                return
            events, marker = await self._initial()
            for start in range(0, len(events), limit):
                chunk = events[start : start + limit]
                done = start + limit >= len(events)
                yield Batch(chunk, marker if done else None)
            if not events:
                yield Batch([], marker)
            while (dirty := await sub.ready()) is not None:
                live: list[JobEvent] = []
                for job_id in dirty:
                    await self._drain(sub, job_id, live)
                for start in range(0, len(live), limit):
                    yield Batch(live[start : start + limit])
        finally:
            hub.detach_user(sub)

    async def _initial(self) -> tuple[list[JobEvent], InitialStateComplete]:
        query = JobQuery(
            user_id=self._user_id,
            statuses=tuple(self._statuses) or UNFINISHED,
            page_size=MAX_INITIAL_JOBS,
        )
        jobs, next_page = await self._service.store.list_jobs(query)
        events = [
            JobEvent(domain.EventType.SNAPSHOT, job)
            for job in jobs
            if job.job_id not in self._after
        ]
        unknown: list[str] = []
        for job_id, after in self._after.items():
            try:
                replay, last, _ = await self._service.replay(job_id, after, self._user_id)
            except NotFound:
                unknown.append(job_id)
                continue
            events += replay
            self._last[job_id] = last
        for event in events:
            self._last[event.job_id] = event.version
        # Sorted: a protobuf map has no order to keep.
        return events, InitialStateComplete(bool(next_page), tuple(sorted(unknown)))

    async def _drain(self, sub: UserSubscription, job_id: str, out: list[JobEvent]) -> None:
        """Move what the job has to send into `out`."""
        last = self._last.get(job_id)
        while (item := sub.take(job_id)) is not None:
            event, covers_from = item
            if last is None:
                # Not sent on this stream yet: a job created since it opened, or one the
                # initial state did not hold. It starts at this event; with a filter, only
                # once its status is in it.
                if self._statuses and event.job.status not in self._statuses:
                    continue
            elif event.version <= last:
                continue
            elif covers_from > last + 1:
                # Versions the subscription did not coalesce away reached this process late
                # (another replica wrote them; see JobService.watch): committed, so read back.
                out += await self._service.history_between(job_id, last, covers_from)
            out.append(event)
            last = event.version
            if event.job.status.terminal:
                self._last.pop(job_id, None)
                sub.forget(job_id)
                return
        if last is None:
            sub.forget(job_id)
        else:
            self._last[job_id] = last
