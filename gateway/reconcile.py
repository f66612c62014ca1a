"""`jobstate reconcile`: settles jobs that went quiet from what RunPod's `/status` knows.

Every `JOBSTATE_RECONCILE_INTERVAL` seconds it lists (over gRPC, like any other client) the
jobs that are `pending` or `processing` and unchanged for `JOBSTATE_STALE_AFTER` seconds, and
for each one decides:

- pending and never submitted (no external_id): FailJob, "never handed to a GPU worker";
- RunPod COMPLETED with `output.output_key`: CompleteJob (the key must be inside the job's
  own output_prefix, `{R2_OUTPUT_PREFIX}{job_id}/`, else FailJob); FAILED / TIMED_OUT:
  FailJob (RunPod's text is logged, not shown); CANCELLED: CancelJob; IN_QUEUE /
  IN_PROGRESS: left alone, looked at again next round;
- RunPod answers 404 (it does not know the job): FailJob, "the GPU worker stopped reporting";
- unfinished on RunPod past `JOBSTATE_HARD_DEADLINE` (from creation): FailJob, then RunPod is
  asked to cancel it (best effort);
- RunPod unreachable or answering oddly: left alone until the deadline.

Without `RUNPOD_ENDPOINT_URL` (the simulated worker) there is no one to ask: only the
never-submitted and hard-deadline rules apply. Silence alone is no proof that a worker died,
so a stale `processing` job is left alone until its deadline.

NOTE: RunPod keeps a `/run` job's status for only 30 minutes after it finishes; after that
`/status` no longer knows it, and a job whose completion callback was lost would be failed
instead of completed. Keep `JOBSTATE_STALE_AFTER + JOBSTATE_RECONCILE_INTERVAL` well below
that (the defaults give at most 10.5 minutes), and do not leave the reconciler down for long.

Several reconcilers at once are harmless: the service makes a restated terminal status a no-op
and answers FAILED_PRECONDITION to a change that lost a race (counted as "raced" here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.client import JobStateClient
from gateway.config import DEFAULT_TARGET, RUNPOD_API_BASE
from gateway.metrics import Metrics
from gateway.outputs import key_problem, output_prefix
from gateway.target import FORMS, is_target
from gateway.worker import WorkerError
from jobstate import logs
from jobstate.config import ConfigError, check_environment, check_secret
from jobstate.v1 import jobstate_pb2 as pb

log = logging.getLogger(__name__)

NEVER_SUBMITTED = (
    "the job was never handed to a GPU worker (the gateway stopped before submitting it)"
)
STOPPED_REPORTING = "the GPU worker stopped reporting: RunPod no longer knows this job"
_UNSETTLED = frozenset({pb.JOB_STATUS_PENDING, pb.JOB_STATUS_PROCESSING})


class StatusSource(Protocol):
    """What the reconciler needs of RunPod (`gateway.runpod.RunPodClient` is one)."""

    async def status(self, external_id: str) -> dict[str, Any]: ...

    async def cancel(self, external_id: str) -> None: ...


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 < value < float("inf"):
        raise ConfigError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class ReconcileConfig:
    jobstate_target: str = DEFAULT_TARGET
    environment: str = "production"
    api_token: str = field(default="", repr=False)
    tls_ca: str = ""
    runpod_endpoint_url: str = ""
    runpod_api_key: str = field(default="", repr=False)
    output_prefix: str = "exports/"
    stale_after: float = 600.0
    interval: float = 30.0
    hard_deadline: float = 6 * 3600.0
    rpc_timeout: float = 10.0
    runpod_timeout: float = 10.0

    def __post_init__(self) -> None:
        check_environment(self.environment)
        if self.api_token and self.environment == "production":
            check_secret("JOBSTATE_API_TOKEN", self.api_token)
        if not is_target(self.jobstate_target):
            raise ConfigError(f"JOBSTATE_TARGET must be {FORMS}, got {self.jobstate_target!r}")
        if self.runpod_endpoint_url and not self.runpod_api_key:
            raise ConfigError("RUNPOD_API_KEY is required when RUNPOD_ENDPOINT_URL is set")
        if self.runpod_endpoint_url and not self.runpod_endpoint_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigError(
                f"RUNPOD_ENDPOINT_URL must be an http(s) URL, got {self.runpod_endpoint_url!r}"
            )
        if self.tls_ca and not Path(self.tls_ca).is_file():
            raise ConfigError(f"JOBSTATE_TLS_CA {self.tls_ca!r} is not a readable file")
        if not self.output_prefix:
            raise ConfigError("R2_OUTPUT_PREFIX must not be empty")
        if self.hard_deadline <= self.stale_after:
            raise ConfigError(
                "JOBSTATE_HARD_DEADLINE must be longer than JOBSTATE_STALE_AFTER "
                f"({self.hard_deadline:g} <= {self.stale_after:g})"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ReconcileConfig:
        runpod_url = environ.get("RUNPOD_ENDPOINT_URL", "").strip()
        if not runpod_url and environ.get("RUNPOD_ENDPOINT", "").strip():
            runpod_url = RUNPOD_API_BASE + environ["RUNPOD_ENDPOINT"].strip()
        return cls(
            jobstate_target=environ.get("JOBSTATE_TARGET", "").strip() or DEFAULT_TARGET,
            environment=environ.get("ENVIRONMENT", "").strip() or "production",
            api_token=environ.get("JOBSTATE_API_TOKEN", ""),
            tls_ca=environ.get("JOBSTATE_TLS_CA", "").strip(),
            runpod_endpoint_url=runpod_url.rstrip("/"),
            runpod_api_key=environ.get("RUNPOD_API_KEY", ""),
            output_prefix=environ.get("R2_OUTPUT_PREFIX", "").strip() or "exports/",
            stale_after=_seconds(environ, "JOBSTATE_STALE_AFTER", 600.0),
            interval=_seconds(environ, "JOBSTATE_RECONCILE_INTERVAL", 30.0),
            hard_deadline=_seconds(environ, "JOBSTATE_HARD_DEADLINE", 6 * 3600.0),
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one job: an RPC (`complete`/`fail`/`cancel`) and its argument, or
    nothing (`leave`), with the outcome name counted in the round's summary."""

    action: str
    argument: str = ""
    outcome: str = "failed"
    silence: bool = False  # decided from silence, not from RunPod's word
    cancel_on_runpod: bool = False


LEAVE = Verdict("leave", outcome="left")
NEVER_SUBMITTED_VERDICT = Verdict("fail", NEVER_SUBMITTED, silence=True)
STOPPED_VERDICT = Verdict("fail", STOPPED_REPORTING, silence=True)


def _utc(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


class Reconciler:
    """One pass (`run_once`) or a loop (`run`) over the jobs that went quiet.

    Talks to jobstate only through `client` (gRPC) and to RunPod only through `runpod`
    (None: the simulated worker, nothing to ask). Safe to run in several processes at once.
    """

    def __init__(
        self,
        client: JobStateClient,
        runpod: StatusSource | None,
        *,
        stale_after: float = 600.0,
        hard_deadline: float = 6 * 3600.0,
        output_prefix: str = "exports/",
        page_size: int = 100,
        concurrency: int = 8,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.runpod = runpod
        self.stale_after = timedelta(seconds=stale_after)
        self.hard_deadline = timedelta(seconds=hard_deadline)
        self.output_prefix = output_prefix
        self.page_size = page_size
        self._limit = asyncio.Semaphore(concurrency)
        self._clock = clock

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        """`run_once` every `interval` seconds until `stop` is set; a failed round is logged."""
        while not stop.is_set():
            try:
                summary = await self.run_once()
            except grpc.aio.AioRpcError as exc:
                log.warning("reconcile round failed: %s %s", exc.code().name, exc.details())
            except Exception:  # a bug must not end the loop; the next round tries again
                log.exception("reconcile round failed")
            else:
                if summary:
                    log.info("reconcile round: %s", dict(summary))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def run_once(self) -> Counter[str]:
        """Examine every stale unfinished job once. Returns outcome counts (`examined`,
        `completed`, `failed`, `cancelled`, `left`, `raced`, `errors`).

        Raises grpc.aio.AioRpcError only when the listing itself fails.
        """
        now = self._clock()
        cutoff = Timestamp()
        cutoff.FromDatetime(now - self.stale_after)
        summary: Counter[str] = Counter()
        token = ""
        while True:
            page = await self.client.list_jobs(
                "",  # every user's jobs
                self.page_size,
                token,
                statuses=sorted(_UNSETTLED),
                updated_before=cutoff,
            )
            outcomes = await asyncio.gather(*(self._settle(job, now) for job in page.jobs))
            summary.update(outcomes)
            if page.jobs:
                summary["examined"] += len(page.jobs)
            token = page.next_page_token
            if not token:
                return summary

    async def _settle(self, job: pb.Job, now: datetime) -> str:
        async with self._limit:
            try:
                verdict = await self._verdict(job, now)
                if verdict.action == "leave":
                    return verdict.outcome
                return await self._apply(job, verdict)
            except grpc.aio.AioRpcError as exc:
                log.warning("reconcile %s: %s %s", job.job_id, exc.code().name, exc.details())
                return "errors"

    async def _verdict(self, job: pb.Job, now: datetime) -> Verdict:
        overdue = now - _utc(job.created_at) > self.hard_deadline
        if not job.external_id:
            if job.status == pb.JOB_STATUS_PENDING:
                return NEVER_SUBMITTED_VERDICT
            # Reporting without a recorded submission, then silence: only the deadline applies.
            return self._overdue() if overdue else LEAVE
        if self.runpod is None:
            return self._overdue() if overdue else LEAVE
        try:
            state = await self.runpod.status(job.external_id)
        except WorkerError as exc:
            if exc.status == 404:
                return STOPPED_VERDICT
            log.warning("reconcile %s: cannot ask RunPod: %s", job.job_id, exc)
            return self._overdue() if overdue else LEAVE
        verdict = self._from_runpod(job, state)
        if verdict.action == "leave" and overdue:
            return self._overdue(cancel_on_runpod=True)
        return verdict

    def _overdue(self, *, cancel_on_runpod: bool = False) -> Verdict:
        hours = self.hard_deadline.total_seconds() / 3600
        message = (
            "the GPU worker stopped reporting: the job was still unfinished after its "
            f"{hours:g} h deadline"
        )
        return Verdict("fail", message, silence=True, cancel_on_runpod=cancel_on_runpod)

    def _from_runpod(self, job: pb.Job, state: dict[str, Any]) -> Verdict:
        status = state.get("status")
        if status == "COMPLETED":
            output = state.get("output")
            key = output.get("output_key") if isinstance(output, dict) else None
            if not isinstance(key, str) or not key:
                return Verdict("fail", "RunPod reports the job completed without an output_key")
            problem = key_problem(key, output_prefix(self.output_prefix, job.job_id))
            if problem:
                return Verdict(
                    "fail", f"RunPod reports an output key that {problem}; it was not accepted"
                )
            return Verdict("complete", key, outcome="completed")
        if status == "FAILED":
            # NOTE: text from RunPod's API goes to the log, never to users (it may echo
            # anything); the worker's own message reaches them through its FAILED webhook.
            log.info("reconcile %s: RunPod reports FAILED: %.500r", job.job_id, state.get("error"))
            return Verdict("fail", "the RunPod job failed")
        if status == "TIMED_OUT":
            return Verdict("fail", "the RunPod job timed out")
        if status == "CANCELLED":
            return Verdict("cancel", "cancelled on RunPod", outcome="cancelled")
        if status not in ("IN_QUEUE", "IN_PROGRESS"):
            log.warning("reconcile %s: RunPod status %r is not one we know", job.job_id, status)
        return LEAVE

    async def _apply(self, job: pb.Job, verdict: Verdict) -> str:
        if verdict.silence:
            # NOTE: a verdict from silence (not from RunPod's word) must not overrule a worker
            # that reported since the listing; re-read and give way if the job moved. A report
            # in the instant between this read and FailJob can still lose; RunPod's own
            # terminal states are facts and need no such check.
            current = await self.client.get_job(job.job_id)
            if current.version != job.version:
                return "raced"
        try:
            if verdict.action == "complete":
                await self.client.complete_job(job.job_id, verdict.argument)
            elif verdict.action == "cancel":
                await self.client.cancel_job(job.job_id, verdict.argument)
            else:
                await self.client.fail_job(job.job_id, verdict.argument)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
                return "raced"  # someone else settled (or removed) it first
            raise
        # NOTE: a restated terminal status (another reconciler came first with the same verdict)
        # is indistinguishable from our own change here, so both count as ours.
        log.info("reconcile %s: %s (%s)", job.job_id, verdict.outcome, verdict.argument)
        if verdict.cancel_on_runpod and self.runpod is not None:
            with contextlib.suppress(WorkerError):  # best effort: stop paying for the GPU
                await self.runpod.cancel(job.external_id)
        return verdict.outcome


async def run_until(config: ReconcileConfig, stop: asyncio.Event) -> None:
    """Build the clients from `config` and reconcile every `config.interval` seconds until
    `stop` is set; a round in flight is then cancelled (it would otherwise wait out an RPC
    deadline) and everything opened here is closed before it returns. `jobstate dev` runs
    this beside its service and gateway; `jobstate reconcile` runs it alone."""
    from gateway.runpod import RunPodClient

    metrics = Metrics()
    client = JobStateClient(
        config.jobstate_target,
        api_token=config.api_token,
        timeout=config.rpc_timeout,
        metrics=metrics,
        tls_ca=config.tls_ca,
    )
    runpod: RunPodClient | None = None
    if config.runpod_endpoint_url:
        runpod = RunPodClient(
            config.runpod_endpoint_url, config.runpod_api_key, config.runpod_timeout, metrics
        )
    else:
        log.info("RUNPOD_ENDPOINT_URL is empty: only the never-submitted and deadline rules apply")
    reconciler = Reconciler(
        client,
        runpod,
        stale_after=config.stale_after,
        hard_deadline=config.hard_deadline,
        output_prefix=config.output_prefix,
    )
    log.info(
        "reconciling %s every %g s (stale after %g s)",
        config.jobstate_target,
        config.interval,
        config.stale_after,
    )
    rounds = asyncio.create_task(reconciler.run(config.interval, stop))
    stopped = asyncio.create_task(stop.wait())
    try:
        # NOTE: a round cancelled mid-way may have settled some of its jobs; the rest are
        # still stale, and the next reconciler to run settles them (verdicts are idempotent).
        await asyncio.wait((rounds, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (rounds, stopped):
            task.cancel()
        await asyncio.gather(rounds, stopped, return_exceptions=True)
        await client.close()
        if runpod is not None:
            await runpod.close()


async def _main(config: ReconcileConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run_until(config, stop)
    return 0


def main(environ: Mapping[str, str]) -> int:
    """`jobstate reconcile`: runs until SIGTERM/SIGINT (exit 0); bad configuration exits 2."""
    try:
        config = ReconcileConfig.from_env(environ)
        logs.setup(environ.get("JOBSTATE_LOG_LEVEL"))
    except ConfigError as exc:
        print(f"jobstate reconcile: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_main(config))
