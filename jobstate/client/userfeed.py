"""Every job of one user over a WatchJobs stream that resumes by itself.

It remembers the last version it yielded of every job it has seen; after the stream is lost
(UNAVAILABLE, a restart, the service's clean end at shutdown) it opens a new one with those
versions as `after_versions`, so nothing is missed and no (job, version) is yielded twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import AsyncGenerator, Collection, Iterable, Mapping, Sequence

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from jobstate.client.channel import error_from_rpc
from jobstate.client.watch import FIRST_BACKOFF, RESUMABLE, InterruptObserver
from jobstate.domain import EventType, InitialStateComplete, JobEvent, Status
from jobstate.errors import JobStateError, Unavailable
from jobstate.translate import EVENT_FROM_PB, STATUS_TO_PB, job_from_pb
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc
from jobstate.wire import MAX_AFTER_VERSIONS

log = logging.getLogger(__name__)

UserFeedItem = JobEvent | InitialStateComplete
# Finished jobs whose last version is remembered, so a re-opened stream's initial state (a
# filter naming terminal statuses) does not yield them again.
FINISHED_REMEMBERED = 10_000


class Positions:
    """The last version yielded per job: unfinished jobs (resumed on re-open, the most
    recently active last) and a bounded memory of finished ones."""

    def __init__(self, after_versions: Mapping[str, int]) -> None:
        self.open: dict[str, int] = dict(after_versions)
        self.finished: OrderedDict[str, int] = OrderedDict()

    def last(self, job_id: str) -> int:
        return self.open.get(job_id, self.finished.get(job_id, 0))

    def seen(self, event: JobEvent) -> None:
        job_id = event.job_id
        self.open.pop(job_id, None)
        if event.job.status.terminal:
            self.finished[job_id] = event.version
            if len(self.finished) > FINISHED_REMEMBERED:
                self.finished.popitem(last=False)
        else:
            self.open[job_id] = event.version

    def resume(self) -> dict[str, int]:
        # NOTE: beyond the service's limit, the least recently active jobs are left out: they
        # are unfinished, so the initial state holds them anyway (as a SNAPSHOT).
        jobs = list(self.open.items())[-MAX_AFTER_VERSIONS:]
        return dict(jobs)


async def watch_user_jobs(
    stub: pb_grpc.JobStateServiceStub,
    metadata: Sequence[tuple[str, str]],
    user_id: str,
    statuses: Iterable[Status],
    after_versions: Mapping[str, int],
    read_mask: Collection[str] | None,
    max_backoff: float,
    on_interrupt: InterruptObserver | None = None,
) -> AsyncGenerator[UserFeedItem, None]:
    wanted = [STATUS_TO_PB[status] for status in statuses]
    mask = None if read_mask is None else FieldMask(paths=sorted(read_mask))
    positions = Positions(after_versions)
    backoff = FIRST_BACKOFF
    while True:
        request = pb.WatchJobsRequest(
            user_id=user_id, statuses=wanted, after_versions=positions.resume(), read_mask=mask
        )
        call = stub.WatchJobs(request, metadata=metadata, wait_for_ready=True)
        try:
            async for message in call:
                backoff = FIRST_BACKOFF
                for item in message.events:
                    if item.job.version <= positions.last(item.job.job_id):
                        continue  # a resume that overlaps what was already yielded
                    kind = EVENT_FROM_PB.get(item.type, EventType.SNAPSHOT)
                    event = JobEvent(kind, job_from_pb(item.job))
                    positions.seen(event)
                    yield event
                if message.HasField("initial_state_complete"):
                    marker = message.initial_state_complete
                    for job_id in marker.unknown_job_ids:
                        positions.open.pop(job_id, None)
                    yield InitialStateComplete(marker.truncated, tuple(marker.unknown_job_ids))
            interruption: JobStateError = Unavailable("the service ended the stream")
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RESUMABLE:
                raise error_from_rpc(exc) from None
            interruption = error_from_rpc(exc)
        finally:
            call.cancel()
        log.info("watch of user %s's jobs interrupted (%s); resuming", user_id, interruption)
        if on_interrupt is not None:
            on_interrupt(interruption)
        await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
        backoff = min(backoff * 2, max_backoff)
