"""gRPC handlers: protobuf in, domain calls, protobuf out; domain errors mapped once."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from jobstate import errors
from jobstate.domain import Cancel, Complete, Fail, Progress, Submit
from jobstate.service import JobService
from jobstate.store import JobQuery
from jobstate.translate import (
    datetime_from_pb,
    event_to_pb,
    job_to_pb,
    params_from_pb,
    statuses_from_pb,
)
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
Request = TypeVar("Request")
Response = TypeVar("Response")

CODES: dict[type[errors.JobStateError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Internal: grpc.StatusCode.INTERNAL,
}


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The code and client-facing message for an exception (MRO lookup; unknown → INTERNAL)."""
    if isinstance(exc, errors.Unavailable) and exc.cause:
        log.warning("job store unavailable: %s", exc.cause)
    for cls in type(exc).__mro__:
        if cls in CODES:
            return CODES[cls], str(exc)
    log.error("internal error", exc_info=exc)
    return grpc.StatusCode.INTERNAL, "internal error; it has been logged"


Unary = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Response]]


def unary(handler: Unary[Request, Response]) -> Unary[Request, Response]:
    @functools.wraps(handler)
    async def wrapper(self: Any, request: Request, context: grpc.aio.ServicerContext) -> Response:
        try:
            return await handler(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            code, message = status_for(exc)
        await context.abort(code, message)
        raise AssertionError("unreachable: abort raises")

    return wrapper


class JobStateServicer(pb_grpc.JobStateServiceServicer):
    def __init__(self, service: JobService, max_watch_streams: int = 10_000) -> None:
        self.service = service
        self.max_watch_streams = max_watch_streams
        self.watch_streams = 0

    @unary
    async def CreateJob(self, request: pb.CreateJobRequest, context: Any) -> pb.CreateJobResponse:
        job = await self.service.create(
            request.job_id,
            request.user_id,
            request.kind,
            params_from_pb(request.params),
            request.idempotency_key,
        )
        return pb.CreateJobResponse(job=job_to_pb(job))

    @unary
    async def GetJob(self, request: pb.GetJobRequest, context: Any) -> pb.GetJobResponse:
        return pb.GetJobResponse(job=job_to_pb(await self.service.get(request.job_id)))

    @unary
    async def ListJobs(self, request: pb.ListJobsRequest, context: Any) -> pb.ListJobsResponse:
        query = JobQuery(
            user_id=request.user_id,
            statuses=statuses_from_pb(request.statuses),
            updated_before=(
                datetime_from_pb(request.updated_before, "updated_before")
                if request.HasField("updated_before")
                else None
            ),
            page_size=request.page_size,
            page_token=request.page_token,
            output_key=request.output_key,
            idempotency_key=request.idempotency_key,
        )
        jobs, token = await self.service.list(query)
        return pb.ListJobsResponse(jobs=[job_to_pb(j) for j in jobs], next_page_token=token)

    @unary
    async def MarkSubmitted(
        self, request: pb.MarkSubmittedRequest, context: Any
    ) -> pb.MarkSubmittedResponse:
        job = await self.service.change(request.job_id, Submit(request.external_id))
        return pb.MarkSubmittedResponse(job=job_to_pb(job))

    @unary
    async def ReportProgress(
        self, request: pb.ReportProgressRequest, context: Any
    ) -> pb.ReportProgressResponse:
        change = Progress(request.progress, request.message)
        job = await self.service.change(request.job_id, change)
        return pb.ReportProgressResponse(job=job_to_pb(job))

    @unary
    async def CompleteJob(
        self, request: pb.CompleteJobRequest, context: Any
    ) -> pb.CompleteJobResponse:
        job = await self.service.change(request.job_id, Complete(request.output_key))
        return pb.CompleteJobResponse(job=job_to_pb(job))

    @unary
    async def FailJob(self, request: pb.FailJobRequest, context: Any) -> pb.FailJobResponse:
        job = await self.service.change(request.job_id, Fail(request.error))
        return pb.FailJobResponse(job=job_to_pb(job))

    @unary
    async def CancelJob(self, request: pb.CancelJobRequest, context: Any) -> pb.CancelJobResponse:
        job = await self.service.change(request.job_id, Cancel(request.reason))
        return pb.CancelJobResponse(job=job_to_pb(job))

    async def WatchJob(
        self, request: pb.WatchJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchJobResponse]:
        if self.watch_streams >= self.max_watch_streams:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this server already serves {self.max_watch_streams} WatchJob streams",
            )
        self.watch_streams += 1
        try:
            async for item in self.service.watch(request.job_id, request.after_version):
                yield event_to_pb(item)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            code, message = status_for(exc)
        else:
            return
        finally:
            self.watch_streams -= 1
        await context.abort(code, message)
