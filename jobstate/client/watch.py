"""A WatchJob stream that resumes by itself and never repeats or reorders a version."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator, Callable, Sequence

import grpc

from jobstate.client.channel import error_from_rpc
from jobstate.domain import JobEvent
from jobstate.errors import JobStateError, Unavailable
from jobstate.translate import event_from_pb, job_from_pb
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

# Told, from the iterating task, each time the stream is lost and the watch is about to resume.
InterruptObserver = Callable[[JobStateError], None]

FIRST_BACKOFF = 0.1
# Codes after which the same watch, re-opened, can succeed: the service went away or restarts
# (a reset HTTP/2 stream surfaces as INTERNAL or UNKNOWN).
RESUMABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


async def watch_job(
    stub: pb_grpc.JobStateServiceAsyncStub,
    metadata: Sequence[tuple[str, str]],
    job_id: str,
    after_version: int,
    max_backoff: float,
    on_interrupt: InterruptObserver | None = None,
) -> AsyncGenerator[JobEvent, None]:
    last = after_version
    backoff = FIRST_BACKOFF
    while True:
        call = stub.WatchJob(
            pb.WatchJobRequest(job_id=job_id, after_version=last),
            metadata=metadata,
            # While the service is away, a re-opened stream waits for it instead of failing.
            wait_for_ready=True,
        )
        try:
            async for response in call:
                event = event_from_pb(response)
                if event.version <= last:
                    continue  # a resume that overlaps what was already yielded
                yield event
                last = event.version
                backoff = FIRST_BACKOFF
                if event.job.status.terminal:
                    return
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RESUMABLE:
                raise error_from_rpc(exc) from None
            log.info("watch of %s interrupted (%s); resuming", job_id, exc.code().name)
            interruption: JobStateError = error_from_rpc(exc)
        else:
            # A clean end without a terminal event: the service shut down, or the job had
            # already finished at `last` and there was nothing newer to send.
            if await _finished_at(stub, metadata, job_id, last):
                return
            interruption = Unavailable("the service ended the stream before the job finished")
        finally:
            call.cancel()
        if on_interrupt is not None:
            on_interrupt(interruption)
        await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
        backoff = min(backoff * 2, max_backoff)


async def _finished_at(
    stub: pb_grpc.JobStateServiceAsyncStub,
    metadata: Sequence[tuple[str, str]],
    job_id: str,
    version: int,
) -> bool:
    try:
        response = await stub.GetJob(
            pb.GetJobRequest(job_id=job_id), metadata=metadata, timeout=5.0
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() in RESUMABLE:
            return False
        raise error_from_rpc(exc) from None
    job = job_from_pb(response.job)
    return job.status.terminal and job.version <= version
