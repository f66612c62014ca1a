"""`JobStateClient`: every RPC of JobStateService as a typed async method.

Plain Python values in and out (`Job`, `JobEvent`, `dict` params, `datetime`s); protobuf
stays inside. A failed call raises a `jobstate.errors.JobStateError` subclass carrying the
server's message (`NotFound`, `InvalidArgument`, `FailedPrecondition`, `AlreadyExists`,
`Unavailable`, `DeadlineExceeded`, `Unauthenticated`, `ResourceExhausted`, `Internal`).
Every unary call has a deadline (`timeout`) and waits for a connection within it
(`wait_for_ready`), so a replica in reconnect back-off is waited for rather than failed at once.
"""

from __future__ import annotations

import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jobstate.client.channel import error_for, error_from_rpc, open_channel
from jobstate.client.feed import JobFeed
from jobstate.client.userfeed import UserFeedItem, watch_user_jobs
from jobstate.client.watch import InterruptObserver, watch_job
from jobstate.domain import (
    Cancel,
    Change,
    Complete,
    Fail,
    Job,
    JobEvent,
    Progress,
    Status,
    Submit,
)
from jobstate.errors import JobStateError
from jobstate.groupcommit import GroupCommit
from jobstate.supervisor import Supervisor
from jobstate.translate import JOB_FIELDS, STATUS_TO_PB, change_to_pb, job_from_pb, params_to_pb
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc
from jobstate.wire import MAX_BATCH_CHANGES

Response = TypeVar("Response", bound=Message)
# Told about every unary call: (method, outcome: "OK" or the status code's name, seconds).
CallObserver = Callable[[str, str, float], None]
# Every Job field but params: what batched changes and feeds ask for when params=False.
WITHOUT_PARAMS = FieldMask(paths=sorted(JOB_FIELDS - {"params"}))


@dataclass(frozen=True, slots=True)
class Page:
    """One page of `list_page`: the jobs, newest first, and the token of the next page
    ("" when this is the last)."""

    jobs: list[Job]
    next_page_token: str


class JobStateClient:
    """A connection to jobstate. Use as `async with JobStateClient(target) as client:` (or call
    `close()`); one client serves any number of concurrent calls and watches.

    `api_token`: sent as `authorization: Bearer <token>` on every call (JOBSTATE_API_TOKEN).
    `tls_ca`: a PEM CA bundle; the channel then uses TLS and trusts only that CA.
    `timeout`: the deadline of each unary call, in seconds.
    `batch_changes`: the change methods (`report_progress`, …) share ApplyChanges calls with
    concurrent changes — far less CPU per change under load, no added wait when idle; one
    job's changes keep their order; the jobs they return carry no params.
    """

    def __init__(
        self,
        target: str,
        *,
        api_token: str | None = None,
        tls_ca: str | Path | None = None,
        timeout: float = 5.0,
        observer: CallObserver | None = None,
        batch_changes: bool = False,
    ) -> None:
        self.target = target
        self._channel = open_channel(target, tls_ca)
        self._stub = pb_grpc.JobStateServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._metadata = (("authorization", f"Bearer {api_token}"),) if api_token else ()
        self._timeout = timeout
        self._observer = observer
        # NOTE: with batch_changes, concurrent changes share ApplyChanges calls, one call in
        # flight (so one job's changes keep their order): a unary call costs hundreds of µs of
        # CPU on each side, an item of a batch a few tens (shared/perf/README.md).
        self._batcher: GroupCommit[tuple[str, Change], Job | JobStateError] | None = None
        if batch_changes:
            self._batcher = GroupCommit(
                self._apply_batch,
                Supervisor(),
                MAX_BATCH_CHANGES,
                name="jobstate-client-batch",
                stopped="the client's batching stopped; retry",
            )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; calls and watches still open end with `Unavailable`."""
        if self._batcher is not None:
            await self._batcher.close()
        await self._channel.close()

    async def _apply_batch(self, changes: list[tuple[str, Change]]) -> list[Job | JobStateError]:
        return await self.apply_changes(changes, params=False)

    async def _unary(self, name: str, call: Any, request: Message) -> Any:
        started = time.perf_counter()
        outcome = "OK"
        try:
            return await call(
                request, timeout=self._timeout, metadata=self._metadata, wait_for_ready=True
            )
        except grpc.aio.AioRpcError as exc:
            outcome = exc.code().name
            raise error_from_rpc(exc) from None
        finally:
            if self._observer is not None:
                self._observer(name, outcome, time.perf_counter() - started)

    async def create_job(
        self,
        user_id: str,
        kind: str = "",
        params: dict[str, Any] | None = None,
        *,
        job_id: str = "",
        idempotency_key: str = "",
    ) -> Job:
        """Create a job (pending, version 1); the server makes a job id unless one is given.

        The same `job_id` and user again returns the existing job; another user's `job_id` is
        `AlreadyExists`. The same user and `idempotency_key` within 24 h returns the job the
        first call made, however the calls were routed. Params that protobuf cannot carry
        (e.g. nested deeper than 100) are `InvalidArgument` before anything is sent.
        """
        request = pb.CreateJobRequest(
            job_id=job_id,
            user_id=user_id,
            kind=kind,
            params=params_to_pb(params or {}),
            idempotency_key=idempotency_key,
        )
        response = await self._unary("CreateJob", self._stub.CreateJob, request)
        return job_from_pb(response.job)

    async def get_job(self, job_id: str) -> Job:
        """The job as it is now; `NotFound` if there is none."""
        response = await self._unary("GetJob", self._stub.GetJob, pb.GetJobRequest(job_id=job_id))
        return job_from_pb(response.job)

    async def list_page(
        self,
        user_id: str = "",
        *,
        statuses: Iterable[Status] = (),
        updated_before: datetime | None = None,
        output_key: str = "",
        idempotency_key: str = "",
        page_size: int = 50,
        page_token: str = "",
    ) -> Page:
        """One page of jobs, newest first (`user_id` empty: every user's). Filters combine:
        `statuses` (any of), `updated_before`, an exact `output_key`, and `idempotency_key`
        (the user's job made with that key within 24 h). At most 500 jobs a page."""
        request = pb.ListJobsRequest(
            user_id=user_id,
            page_size=page_size,
            page_token=page_token,
            statuses=[STATUS_TO_PB[status] for status in statuses],
            output_key=output_key,
            idempotency_key=idempotency_key,
        )
        if updated_before is not None:
            bound = Timestamp()
            bound.FromDatetime(updated_before)
            request.updated_before.CopyFrom(bound)
        response = await self._unary("ListJobs", self._stub.ListJobs, request)
        return Page([job_from_pb(job) for job in response.jobs], response.next_page_token)

    async def list_jobs(
        self,
        user_id: str = "",
        *,
        statuses: Iterable[Status] = (),
        updated_before: datetime | None = None,
        output_key: str = "",
        idempotency_key: str = "",
        page_size: int = 100,
    ) -> AsyncIterator[Job]:
        """Every matching job, newest first, fetched a page at a time as you iterate."""
        wanted: Sequence[Status] = tuple(statuses)
        token = ""
        while True:
            page = await self.list_page(
                user_id,
                statuses=wanted,
                updated_before=updated_before,
                output_key=output_key,
                idempotency_key=idempotency_key,
                page_size=page_size,
                page_token=token,
            )
            for job in page.jobs:
                yield job
            token = page.next_page_token
            if not token:
                return

    async def mark_submitted(self, job_id: str, external_id: str) -> Job:
        """Record the worker's id: pending → processing. Repeating it is harmless; another id
        on a job that has one, or a finished job, is `FailedPrecondition`."""
        return await self.apply(job_id, Submit(external_id))

    async def report_progress(self, job_id: str, progress: float, message: str = "") -> Job:
        """Record progress (0..100). A value below the current one is accepted and ignored;
        a finished job is `FailedPrecondition`."""
        return await self.apply(job_id, Progress(progress, message))

    async def complete_job(self, job_id: str, output_key: str) -> Job:
        """Finish the job with its output (progress 100). The same key again is harmless;
        another key, or another terminal status, is `FailedPrecondition`."""
        return await self.apply(job_id, Complete(output_key))

    async def fail_job(self, job_id: str, error: str) -> Job:
        """Finish the job with an error; on an errored job harmless, on another finished job
        `FailedPrecondition`."""
        return await self.apply(job_id, Fail(error))

    async def cancel_job(self, job_id: str, reason: str = "") -> Job:
        """Cancel the job; on a cancelled job harmless, on another finished job
        `FailedPrecondition`. Compare versions to tell whether this call changed it."""
        return await self.apply(job_id, Cancel(reason))

    async def apply(self, job_id: str, change: Change) -> Job:
        """Apply one change (`Submit`, `Progress`, `Complete`, `Fail`, `Cancel` from
        `jobstate.domain`), as the method of that name does; the job after it."""
        if self._batcher is not None:
            outcome = await self._batcher.submit((job_id, change))
            if isinstance(outcome, JobStateError):
                raise outcome
            return outcome
        match change:
            case Submit(external_id):
                submit = pb.MarkSubmittedRequest(job_id=job_id, external_id=external_id)
                response = await self._unary("MarkSubmitted", self._stub.MarkSubmitted, submit)
            case Progress(value, message):
                progress = pb.ReportProgressRequest(job_id=job_id, progress=value, message=message)
                response = await self._unary("ReportProgress", self._stub.ReportProgress, progress)
            case Complete(output_key):
                complete = pb.CompleteJobRequest(job_id=job_id, output_key=output_key)
                response = await self._unary("CompleteJob", self._stub.CompleteJob, complete)
            case Fail(error):
                fail = pb.FailJobRequest(job_id=job_id, error=error)
                response = await self._unary("FailJob", self._stub.FailJob, fail)
            case Cancel(reason):
                cancel = pb.CancelJobRequest(job_id=job_id, reason=reason)
                response = await self._unary("CancelJob", self._stub.CancelJob, cancel)
        return job_from_pb(response.job)

    async def apply_changes(
        self, changes: Sequence[tuple[str, Change]], *, params: bool = True
    ) -> list[Job | JobStateError]:
        """Many changes in one call (ApplyChanges): one outcome per change, in order — the job
        after it, or the error its own call would have raised. Changes to one job apply in the
        order given. `params=False` leaves params out of the jobs (they never change after
        creation; `get_job` has them). At most 1,000 changes; the call as a whole raises only
        when it cannot be made (`Unavailable`, …)."""
        request = pb.ApplyChangesRequest(
            changes=[change_to_pb(job_id, change) for job_id, change in changes],
            read_mask=None if params else WITHOUT_PARAMS,
        )
        response = await self._unary("ApplyChanges", self._stub.ApplyChanges, request)
        return [
            job_from_pb(result.job) if result.code == 0 else error_for(result.code, result.message)
            for result in response.results
        ]

    def feed(
        self,
        *,
        params: bool = True,
        max_backoff: float = 2.0,
        on_interrupt: InterruptObserver | None = None,
    ) -> JobFeed:
        """A `JobFeed`: any number of jobs followed over one stream (FollowJobs) that resumes
        by itself; `params=False` leaves params out of the jobs its events carry."""
        mask = None if params else WITHOUT_PARAMS
        return JobFeed(self._stub, self._metadata, mask, max_backoff, on_interrupt)

    def watch(
        self,
        job_id: str,
        after_version: int = 0,
        *,
        max_backoff: float = 2.0,
        on_interrupt: InterruptObserver | None = None,
    ) -> AsyncGenerator[JobEvent, None]:
        """The job's events in strictly increasing version order, ending after the terminal
        one. From 0 (or when history no longer reaches back) the first is a SNAPSHOT.

        It resumes by itself — after UNAVAILABLE, a service restart or a lost connection it
        re-opens from the last version it yielded, with jittered back-off capped at
        `max_backoff` seconds — and never yields a version twice. `NotFound`,
        `InvalidArgument`, `Unauthenticated` and `ResourceExhausted` end it. Close it (or
        leave the `async for`) to stop watching. `on_interrupt`, when given, is called with
        the error each time the stream is lost and the watch is about to resume (a display's
        "reconnecting…"); the next event it yields shows the stream is back. It is an async
        generator: `contextlib.aclosing` ends its call at once when you stop early.
        """
        return watch_job(
            self._stub, self._metadata, job_id, after_version, max_backoff, on_interrupt
        )

    def watch_jobs(
        self,
        user_id: str,
        *,
        statuses: Iterable[Status] = (),
        after_versions: Mapping[str, int] | None = None,
        read_mask: Collection[str] | None = None,
        max_backoff: float = 2.0,
        on_interrupt: InterruptObserver | None = None,
    ) -> AsyncGenerator[UserFeedItem, None]:
        """Every job of `user_id` (WatchJobs): first the initial state — a SNAPSHOT of each of
        the user's unfinished jobs (with `statuses`: of those statuses; the newest 1,000) and
        the events of each job in `after_versions` after the version given — then an
        `InitialStateComplete`, then every later event of any of the user's jobs, new ones
        included, as it commits. With `statuses`, a live event is yielded when the job's
        status after it is one of them or the job was already yielded.

        Per job, versions strictly increase and none is yielded twice; a slow reader may miss
        intermediate PROGRESS but never a status change. It resumes by itself (as `watch`:
        jittered back-off capped at `max_backoff`, `on_interrupt` told each time) with
        `after_versions` set to the last version yielded of every unfinished job it has seen
        (and the jobs it was given), and yields an `InitialStateComplete` again after each
        re-opened stream's initial state; jobs named in its `unknown_job_ids` (not found, or
        another user's) are not resumed. It never ends by itself: close it or leave the
        `async for`. `InvalidArgument`, `Unauthenticated` and `ResourceExhausted` end it.
        `read_mask`: the Job fields events carry (Job field names; job_id, version and status
        always come), None for all.
        """
        return watch_user_jobs(
            self._stub,
            self._metadata,
            user_id,
            statuses,
            after_versions or {},
            read_mask,
            max_backoff,
            on_interrupt,
        )

    async def healthy(self, deadline: float = 2.0) -> bool:
        """True when the service answers grpc.health.v1 with SERVING (unauthenticated: it
        does not prove the token is right — any other call does)."""
        try:
            response = await self._health.Check(
                health_pb2.HealthCheckRequest(service=""),
                timeout=deadline,
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)
