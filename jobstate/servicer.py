"""gRPC handlers: protobuf in, domain calls, protobuf out; domain errors mapped once."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from jobstate import errors
from jobstate.domain import (
    Cancel,
    Complete,
    Fail,
    InitialStateComplete,
    Job,
    JobEvent,
    Progress,
    Submit,
)
from jobstate.follow import MAX_EVENTS, MAX_EVENTS_WITH_PARAMS, End, Follower
from jobstate.service import JobService
from jobstate.store import JobQuery
from jobstate.translate import (
    EVENT_TO_PB,
    Fields,
    change_from_pb,
    datetime_from_pb,
    event_to_pb,
    fields_from_mask,
    job_to_pb,
    params_from_pb,
    statuses_from_pb,
)
from jobstate.userwatch import UserWatch
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc
from jobstate.wire import MAX_BATCH_CHANGES

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


Unary = Callable[[Any, Request, grpc.aio.ServicerContext[Request, Response]], Awaitable[Response]]


def unary(handler: Unary[Request, Response]) -> Unary[Request, Response]:
    @functools.wraps(handler)
    async def wrapper(
        self: Any, request: Request, context: grpc.aio.ServicerContext[Request, Response]
    ) -> Response:
        try:
            return await handler(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            code, message = status_for(exc)
        await context.abort(code, message)
        raise AssertionError("unreachable: abort raises")

    return wrapper


def _result(outcome: Job | errors.JobStateError, fields: Fields) -> pb.ChangeResult:
    if isinstance(outcome, Job):
        return pb.ChangeResult(job=job_to_pb(outcome, fields))
    code, message = status_for(outcome)
    return pb.ChangeResult(code=code.value[0], message=message)


def _job_event(event: JobEvent, fields: Fields) -> pb.JobEvent:
    return pb.JobEvent(type=EVENT_TO_PB[event.type], job=job_to_pb(event.job, fields))


def _end(end: End) -> pb.FollowEnd:
    if end.error is None:
        return pb.FollowEnd(job_id=end.job_id)
    code, message = status_for(end.error)
    return pb.FollowEnd(job_id=end.job_id, code=code.value[0], message=message)


def _initial_state_complete(marker: InitialStateComplete) -> pb.InitialStateComplete:
    return pb.InitialStateComplete(
        truncated=marker.truncated, unknown_job_ids=marker.unknown_job_ids
    )


ALWAYS_SENT = frozenset({"job_id", "version", "status"})


def _user_watch(service: JobService, request: pb.WatchJobsRequest) -> tuple[UserWatch, Fields]:
    """The stream a WatchJobsRequest asks for and the Job fields its events carry (job_id,
    version and status always: a client of many jobs tells events apart and finished jobs
    by them). InvalidArgument."""
    watch = UserWatch(
        service,
        request.user_id,
        statuses_from_pb(request.statuses),
        dict(request.after_versions),
    )
    fields = fields_from_mask(request.read_mask)
    return watch, None if fields is None else fields | ALWAYS_SENT


async def _read_follow_requests(
    requests: AsyncIterator[pb.FollowJobsRequest], follower: Follower
) -> None:
    """Apply the client's requests to `follower` until it stops sending."""
    try:
        async for request in requests:
            match request.WhichOneof("request"):
                case "follow":
                    follow = request.follow
                    try:
                        fields = fields_from_mask(follow.read_mask)
                    except errors.InvalidArgument as exc:
                        follower.refuse(follow.job_id, exc)
                        continue
                    follower.follow(follow.job_id, follow.after_version, fields)
                case "unfollow":
                    follower.unfollow(request.unfollow.job_id)
    finally:
        follower.requests_done()


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

    @unary
    async def ApplyChanges(
        self, request: pb.ApplyChangesRequest, context: Any
    ) -> pb.ApplyChangesResponse:
        if len(request.changes) > MAX_BATCH_CHANGES:
            raise errors.InvalidArgument(
                f"{len(request.changes)} changes in one call; the limit is {MAX_BATCH_CHANGES}"
            )
        fields = fields_from_mask(request.read_mask)
        changes = [change_from_pb(change) for change in request.changes]
        outcomes = await self.service.change_many(changes)
        return pb.ApplyChangesResponse(results=[_result(o, fields) for o in outcomes])

    async def _stream(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        kind: str,
        responses: AsyncGenerator[Response, None],
    ) -> AsyncIterator[Response]:
        """One server stream: a slot of the process's stream cap while it runs; an error ends
        it with its code and client-facing message (an unexpected one as INTERNAL, logged).
        `responses` is closed with the stream, however it ends."""
        if self.watch_streams >= self.max_watch_streams:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this server already serves {self.max_watch_streams} {kind} streams",
            )
        self.watch_streams += 1
        try:
            async with contextlib.aclosing(responses):
                async for response in responses:
                    yield response
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            code, message = status_for(exc)
        else:
            return
        finally:
            self.watch_streams -= 1
        await context.abort(code, message)

    async def WatchJob(
        self,
        request: pb.WatchJobRequest,
        context: grpc.aio.ServicerContext[pb.WatchJobRequest, pb.WatchJobResponse],
    ) -> AsyncIterator[pb.WatchJobResponse]:
        events = self.service.watch(request.job_id, request.after_version)
        async for response in self._stream(context, "WatchJob", _watch_responses(events)):
            yield response

    async def WatchJobs(
        self,
        request: pb.WatchJobsRequest,
        context: grpc.aio.ServicerContext[pb.WatchJobsRequest, pb.WatchJobsResponse],
    ) -> AsyncIterator[pb.WatchJobsResponse]:
        try:
            watch, fields = _user_watch(self.service, request)
        except errors.JobStateError as exc:
            code, message = status_for(exc)
            await context.abort(code, message)
        async for response in self._stream(context, "watch", _user_responses(watch, fields)):
            yield response

    async def FollowJobs(
        self,
        requests: AsyncIterator[pb.FollowJobsRequest],
        context: grpc.aio.ServicerContext[pb.FollowJobsRequest, pb.FollowJobsResponse],
    ) -> AsyncIterator[pb.FollowJobsResponse]:
        responses = _follow_responses(self.service, requests)
        async for response in self._stream(context, "watch", responses):
            yield response


async def _watch_responses(
    events: AsyncIterator[JobEvent],
) -> AsyncGenerator[pb.WatchJobResponse, None]:
    async for event in events:
        yield event_to_pb(event)


async def _user_responses(
    watch: UserWatch, fields: Fields
) -> AsyncGenerator[pb.WatchJobsResponse, None]:
    limit = MAX_EVENTS_WITH_PARAMS if fields is None or "params" in fields else MAX_EVENTS
    async for batch in watch.batches(limit):
        response = pb.WatchJobsResponse(
            events=[_job_event(event, fields) for event in batch.events]
        )
        if batch.initial_state_complete is not None:
            response.initial_state_complete.CopyFrom(
                _initial_state_complete(batch.initial_state_complete)
            )
        yield response


async def _follow_responses(
    service: JobService, requests: AsyncIterator[pb.FollowJobsRequest]
) -> AsyncGenerator[pb.FollowJobsResponse, None]:
    follower = Follower(service, service.hub)
    reader = asyncio.create_task(_read_follow_requests(requests, follower))
    try:
        async for batch in follower.batches():
            yield pb.FollowJobsResponse(
                events=[_job_event(event, fields) for event, fields in batch.events],
                ends=[_end(end) for end in batch.ends],
            )
    finally:
        reader.cancel()
        follower.close()
