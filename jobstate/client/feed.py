"""`JobFeed`: many jobs followed over one FollowJobs stream that re-opens by itself.

The feed remembers, per followed job, the last version it yielded; after the stream is lost
(UNAVAILABLE, a service restart, a clean end at shutdown) it opens a new one and follows every
job again from there, so nothing is missed and no version is yielded twice. Events that
committed together arrive together, as one batch.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from jobstate.client.channel import error_for, error_from_rpc
from jobstate.client.watch import FIRST_BACKOFF, RESUMABLE, InterruptObserver
from jobstate.domain import EventType, JobEvent
from jobstate.errors import JobStateError, Unavailable
from jobstate.translate import EVENT_FROM_PB, job_from_pb
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ended:
    """A followed job the feed says nothing more about: after its terminal event (`error` is
    None), or because the service refused to follow it (`NotFound`, `InvalidArgument`, …)."""

    job_id: str
    error: JobStateError | None = None


FeedItem = JobEvent | Ended


class JobFeed:
    """Use as `async for batch in feed:` (each batch a list of `JobEvent` and `Ended`, in
    order) while calling `follow`/`unfollow` from anywhere in the same event loop.

    Per job the WatchJob rules hold: versions strictly increase, a SNAPSHOT starts a job
    followed from 0, a follower that falls behind may lose intermediate PROGRESS but never a
    status change. Iteration ends only when `close()` is called (or raises for an error the
    stream cannot recover from, e.g. `Unauthenticated` or `ResourceExhausted`).
    """

    def __init__(
        self,
        stub: pb_grpc.JobStateServiceAsyncStub,
        metadata: Sequence[tuple[str, str]],
        read_mask: FieldMask | None,
        max_backoff: float,
        on_interrupt: InterruptObserver | None,
    ) -> None:
        self._stub = stub
        self._metadata = metadata
        self._mask = read_mask
        self._max_backoff = max_backoff
        self._on_interrupt = on_interrupt
        self._positions: dict[str, int] = {}  # followed job -> last version yielded
        self._open: dict[str, int] = {}  # job -> follows sent on this stream, end not yet seen
        self._requests: asyncio.Queue[pb.FollowJobsRequest | None] | None = None
        self._call: grpc.aio.StreamStreamCall[pb.FollowJobsRequest, pb.FollowJobsResponse] | None
        self._call = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._positions)

    def follow(self, job_id: str, after_version: int = 0) -> None:
        """Follow `job_id` from `after_version` (following it again restarts it there)."""
        self._positions[job_id] = after_version
        self._send_follow(job_id)

    def unfollow(self, job_id: str) -> None:
        """Stop following `job_id`; nothing more of it is yielded."""
        if self._positions.pop(job_id, None) is not None and self._requests is not None:
            request = pb.FollowJobsRequest(unfollow=pb.UnfollowJob(job_id=job_id))
            self._requests.put_nowait(request)

    def close(self) -> None:
        """End the iteration (the stream is cancelled)."""
        self._closed = True
        if self._call is not None:
            self._call.cancel()

    def _send_follow(self, job_id: str) -> None:
        if self._requests is None:
            return  # sent when the next stream opens
        self._open[job_id] = self._open.get(job_id, 0) + 1
        follow = pb.FollowJob(
            job_id=job_id, after_version=self._positions[job_id], read_mask=self._mask
        )
        self._requests.put_nowait(pb.FollowJobsRequest(follow=follow))

    async def __aiter__(self) -> AsyncIterator[list[FeedItem]]:
        backoff = FIRST_BACKOFF
        while not self._closed:
            requests: asyncio.Queue[pb.FollowJobsRequest | None] = asyncio.Queue()
            self._requests, self._open = requests, {}
            for job_id in self._positions:
                self._send_follow(job_id)
            self._call = self._stub.FollowJobs(
                _drain(requests), metadata=self._metadata, wait_for_ready=True
            )
            try:
                async for message in self._call:
                    backoff = FIRST_BACKOFF
                    if items := self._read(message):
                        yield items
                interruption: JobStateError = Unavailable("the service ended the stream")
                cause = "ended by the service"
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closed and task is not None and not task.cancelling():
                    return  # close() cancelled the call, not someone our task
                raise
            except grpc.aio.AioRpcError as exc:
                if self._closed:
                    return
                if exc.code() not in RESUMABLE:
                    raise error_from_rpc(exc) from None
                interruption = error_from_rpc(exc)
                cause = exc.code().name
            finally:
                self._requests = None
                requests.put_nowait(None)
                self._call.cancel()
            if self._closed:
                return
            log.info("job feed interrupted (%s); resuming", cause)
            if self._on_interrupt is not None:
                self._on_interrupt(interruption)
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, self._max_backoff)

    def _read(self, message: pb.FollowJobsResponse) -> list[FeedItem]:
        items: list[FeedItem] = []
        for event in message.events:
            job_id, version = event.job.job_id, event.job.version
            last = self._positions.get(job_id)
            if last is None or version <= last:
                continue  # unfollowed, or a resume that overlaps what was yielded
            self._positions[job_id] = version
            kind = EVENT_FROM_PB.get(event.type, EventType.SNAPSHOT)
            items.append(JobEvent(kind, job_from_pb(event.job)))
        for end in message.ends:
            job_id = end.job_id
            still_open = self._open.get(job_id, 0) - 1
            if still_open > 0:
                self._open[job_id] = still_open
                continue  # the end of a follow a later follow replaced
            self._open.pop(job_id, None)
            if self._positions.pop(job_id, None) is None:
                continue  # the end of a follow this client stopped
            error = None if end.code == 0 else error_for(end.code, end.message)
            items.append(Ended(job_id, error))
        return items


async def _drain(
    requests: asyncio.Queue[pb.FollowJobsRequest | None],
) -> AsyncIterator[pb.FollowJobsRequest]:
    while (request := await requests.get()) is not None:
        yield request
