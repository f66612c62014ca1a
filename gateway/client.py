"""The gateway's only way to the jobstate service: one grpc.aio channel, deadlines on every call.

Every unary call carries `rpc_timeout` as its deadline and, when JOBSTATE_API_TOKEN is set,
`authorization: Bearer <token>` metadata. Failures surface as `grpc.aio.AioRpcError`; the
HTTP layer translates them in one place (`translate.http_error`). A call the service refuses
as UNAUTHENTICATED is logged here, naming JOBSTATE_API_TOKEN (never the token).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.metrics import Metrics
from gateway.translate import params_struct
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

# GetJob of an id no job is given (ids the service makes are 32 hex digits): an authenticated
# call that reads the store and is expected to answer NOT_FOUND.
HEALTH_PROBE_JOB_ID = "jobstate-gateway-health-probe"
_REFUSED = (
    "the jobstate service refused this process's service token (UNAUTHENTICATED): "
    "set JOBSTATE_API_TOKEN to the token the service was started with"
)

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    # NOTE: the default reconnect back-off grows to 120 s; a restarted service must be found
    # again within seconds.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # Idle WatchJob streams must survive proxies and notice a dead peer.
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
]


class JobStateClient:
    """Typed wrappers around the JobStateService stub; each returns the response's `Job`."""

    def __init__(
        self,
        target: str,
        *,
        api_token: str = "",
        timeout: float = 5.0,
        metrics: Metrics,
        tls_ca: str = "",
    ) -> None:
        """`tls_ca`: path of a PEM CA bundle; when given, the channel uses TLS and trusts only
        that CA (JOBSTATE_TLS_CA). Raises OSError if it cannot be read."""
        options = list(CHANNEL_OPTIONS)
        # Spread calls over every address the target resolves to (ipv4:a:1,b:2 or a dns: name
        # with several records); with one address this is the same as pick_first.
        options.append(("grpc.lb_policy_name", "round_robin"))
        if tls_ca:
            credentials = grpc.ssl_channel_credentials(Path(tls_ca).read_bytes())
            self._channel = grpc.aio.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        self._stub = pb_grpc.JobStateServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._metadata = (("authorization", f"Bearer {api_token}"),) if api_token else ()
        self._timeout = timeout
        self._metrics = metrics

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, name: str, request: Any) -> pb.Job:
        return (await self._rpc(name, request)).job

    async def _rpc(self, name: str, request: Any) -> Any:
        method = getattr(self._stub, name)
        started = time.perf_counter()
        code = "OK"
        try:
            # wait_for_ready: a replica in reconnect back-off is waited for (within the
            # deadline) instead of failing at once; healthz uses `healthy`, which does not wait.
            response = await method(
                request, timeout=self._timeout, metadata=self._metadata, wait_for_ready=True
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                log.error("%s: %s", name, _REFUSED)
            raise
        finally:
            self._metrics.grpc_latency.labels(name, code).observe(time.perf_counter() - started)
        return response

    async def create_job(
        self, user_id: str, kind: str, params: dict[str, Any], idempotency_key: str = ""
    ) -> pb.Job:
        request = pb.CreateJobRequest(
            user_id=user_id,
            kind=kind,
            params=params_struct(params),
            idempotency_key=idempotency_key,
        )
        return await self._call("CreateJob", request)

    async def get_job(self, job_id: str) -> pb.Job:
        return await self._call("GetJob", pb.GetJobRequest(job_id=job_id))

    async def list_jobs(
        self,
        user_id: str,
        page_size: int,
        page_token: str = "",
        statuses: list[int] | None = None,
        updated_before: Timestamp | None = None,
        output_key: str = "",
        idempotency_key: str = "",
    ) -> pb.ListJobsResponse:
        request = pb.ListJobsRequest(
            user_id=user_id,
            page_size=page_size,
            page_token=page_token,
            statuses=statuses or [],
            updated_before=updated_before,
            output_key=output_key,
            idempotency_key=idempotency_key,
        )
        return await self._rpc("ListJobs", request)

    async def job_for_key(self, user_id: str, idempotency_key: str) -> pb.Job | None:
        """The job `user_id` created with `idempotency_key` within the service's 24 h window
        (the one CreateJob would return for it), or None."""
        page = await self.list_jobs(user_id, 1, idempotency_key=idempotency_key)
        return page.jobs[0] if page.jobs else None

    async def mark_submitted(self, job_id: str, external_id: str) -> pb.Job:
        request = pb.MarkSubmittedRequest(job_id=job_id, external_id=external_id)
        return await self._call("MarkSubmitted", request)

    async def report_progress(self, job_id: str, progress: float, message: str = "") -> pb.Job:
        request = pb.ReportProgressRequest(job_id=job_id, progress=progress, message=message)
        return await self._call("ReportProgress", request)

    async def complete_job(self, job_id: str, output_key: str) -> pb.Job:
        request = pb.CompleteJobRequest(job_id=job_id, output_key=output_key)
        return await self._call("CompleteJob", request)

    async def fail_job(self, job_id: str, error: str) -> pb.Job:
        return await self._call("FailJob", pb.FailJobRequest(job_id=job_id, error=error))

    async def cancel_job(self, job_id: str, reason: str) -> pb.Job:
        return await self._call("CancelJob", pb.CancelJobRequest(job_id=job_id, reason=reason))

    def watch(self, job_id: str, after_version: int) -> AsyncIterator[pb.WatchJobResponse]:
        """A WatchJob stream; no deadline (streams are excepted), keepalive guards it."""
        request = pb.WatchJobRequest(job_id=job_id, after_version=after_version)
        return self._stub.WatchJob(request, metadata=self._metadata)

    async def healthy(self, deadline: float = 2.0) -> bool:
        """True when the service answers grpc.health.v1 with SERVING *and* an authenticated
        call goes through. grpc health is open to every caller, so it alone cannot tell that
        JOBSTATE_API_TOKEN is accepted: a GetJob of an id no job has must answer NOT_FOUND
        (or OK). Neither call waits for a connection; each has `deadline` seconds."""
        try:
            response = await self._health.Check(
                health_pb2.HealthCheckRequest(service=""),
                timeout=deadline,
                metadata=self._metadata,
                wait_for_ready=False,
            )
        except grpc.aio.AioRpcError:
            return False
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            return False
        try:
            await self._stub.GetJob(
                pb.GetJobRequest(job_id=HEALTH_PROBE_JOB_ID),
                timeout=deadline,
                metadata=self._metadata,
                wait_for_ready=False,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                log.error("health check: %s", _REFUSED)
            return exc.code() == grpc.StatusCode.NOT_FOUND
        return True
