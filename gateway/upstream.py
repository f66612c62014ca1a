"""The gateway's and the reconciler's way to the service: a `jobstate.client.JobStateClient`.

`connect(settings, metrics)` builds it the same way from either process's configuration: the
service token, the CA bundle, a deadline on every unary call (the client also waits for a
connection within it), and the latency of each call in the gateway's metrics.
`authorised(client)` is healthz's probe.
"""

from __future__ import annotations

from typing import Protocol

from gateway.errors import report
from gateway.metrics import Metrics
from jobstate.client import CallObserver, JobStateClient, JobStateError, NotFound

# GetJob of an id no job is given (ids the service makes are 32 hex digits): an authenticated
# call that reads the store and is expected to answer NotFound.
HEALTH_PROBE_JOB_ID = "jobstate-gateway-health-probe"


class ServiceSettings(Protocol):
    """What `connect` reads (`GatewayConfig` and `ReconcileConfig` both have it)."""

    @property
    def jobstate_target(self) -> str: ...

    @property
    def api_token(self) -> str: ...

    @property
    def tls_ca(self) -> str: ...

    @property
    def rpc_timeout(self) -> float: ...


def connect(
    settings: ServiceSettings, metrics: Metrics | None = None, *, batch_changes: bool = False
) -> JobStateClient:
    """A client of the service (call it inside the running loop: it opens the channel);
    `batch_changes`: concurrent changes share ApplyChanges calls (see `JobStateClient`).
    Raises OSError if the CA bundle cannot be read."""
    observer: CallObserver | None = None
    if metrics is not None:
        latency = metrics.grpc_latency

        def observe(method: str, outcome: str, seconds: float) -> None:
            latency.labels(method, outcome).observe(seconds)

        observer = observe
    return JobStateClient(
        settings.jobstate_target,
        api_token=settings.api_token or None,
        tls_ca=settings.tls_ca or None,
        timeout=settings.rpc_timeout,
        observer=observer,
        batch_changes=batch_changes,
    )


async def authorised(client: JobStateClient) -> bool:
    """True when the service answers grpc.health.v1 with SERVING *and* an authenticated call
    goes through. grpc health is open to every caller, so it alone cannot tell that
    JOBSTATE_API_TOKEN is accepted: a GetJob of an id no job has must answer NotFound (or a
    job). A refused token is logged, naming the variable."""
    if not await client.healthy():
        return False
    try:
        await client.get_job(HEALTH_PROBE_JOB_ID)
    except NotFound:
        return True
    except JobStateError as exc:
        report("health check", exc)
        return False
    return True
