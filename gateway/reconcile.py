"""`jobstate reconcile`: settles jobs that went quiet from what RunPod's `/status` knows.

Every `JOBSTATE_RECONCILE_INTERVAL` seconds it lists (through `jobstate.client`, like any
other client) the jobs that are `pending` or `processing` and unchanged for
`JOBSTATE_STALE_AFTER` seconds, asks RunPod about each one that has a RunPod id, and applies
the verdict of `verdicts.judge` (the rules, pure and tested as a table): complete, fail or
cancel it, or leave it for the next round. A verdict drawn from silence gives way to a worker
that reported since the listing; a job unfinished past `JOBSTATE_HARD_DEADLINE` is failed and
then, if RunPod still runs it, cancelled there (best effort).

Without `RUNPOD_ENDPOINT_URL` (the simulated worker) there is no one to ask: only the
never-submitted and hard-deadline rules apply.

NOTE: RunPod keeps a `/run` job's status for only 30 minutes after it finishes; after that
`/status` no longer knows it, and a job whose completion callback was lost would be failed
instead of completed. Keep `JOBSTATE_STALE_AFTER + JOBSTATE_RECONCILE_INTERVAL` well below
that (the defaults give at most 10.5 minutes), and do not leave the reconciler down for long.

Several reconcilers at once are harmless: the service makes a restated terminal status a no-op
and answers FailedPrecondition to a change that lost a race (counted as "raced" here).
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

from gateway.changes import apply_change
from gateway.config import DEFAULT_TARGET
from gateway.endpoints import check_runpod, runpod_endpoint_url
from gateway.metrics import Metrics
from gateway.outputs import root_problem
from gateway.target import FORMS, is_target
from gateway.upstream import connect
from gateway.verdicts import GONE, NOT_ASKED, UNREACHABLE, Answer, Change, Rules, Verdict, judge
from gateway.worker import WorkerError, WorkerJobNotFound
from jobstate import logs
from jobstate.client import FailedPrecondition, Job, JobStateClient, JobStateError, NotFound, Status
from jobstate.config import ConfigError, check_environment, check_secret
from jobstate.loop import loop_factory, loop_name, run

log = logging.getLogger(__name__)

UNSETTLED = (Status.PENDING, Status.PROCESSING)


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
        check_runpod(self.runpod_endpoint_url, self.runpod_api_key)
        if self.tls_ca and not Path(self.tls_ca).is_file():
            raise ConfigError(f"JOBSTATE_TLS_CA {self.tls_ca!r} is not a readable file")
        if not self.output_prefix:
            raise ConfigError("R2_OUTPUT_PREFIX must not be empty")
        if problem := root_problem(self.output_prefix):
            raise ConfigError(f"R2_OUTPUT_PREFIX {problem}, got {self.output_prefix!r}")
        if self.hard_deadline <= self.stale_after:
            raise ConfigError(
                "JOBSTATE_HARD_DEADLINE must be longer than JOBSTATE_STALE_AFTER "
                f"({self.hard_deadline:g} <= {self.stale_after:g})"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ReconcileConfig:
        return cls(
            jobstate_target=environ.get("JOBSTATE_TARGET", "").strip() or DEFAULT_TARGET,
            environment=environ.get("ENVIRONMENT", "").strip() or "production",
            api_token=environ.get("JOBSTATE_API_TOKEN", ""),
            tls_ca=environ.get("JOBSTATE_TLS_CA", "").strip(),
            runpod_endpoint_url=runpod_endpoint_url(environ),
            runpod_api_key=environ.get("RUNPOD_API_KEY", ""),
            output_prefix=environ.get("R2_OUTPUT_PREFIX", "").strip() or "exports/",
            stale_after=_seconds(environ, "JOBSTATE_STALE_AFTER", 600.0),
            interval=_seconds(environ, "JOBSTATE_RECONCILE_INTERVAL", 30.0),
            hard_deadline=_seconds(environ, "JOBSTATE_HARD_DEADLINE", 6 * 3600.0),
        )


class Reconciler:
    """One pass (`run_once`) or a loop (`run`) over the jobs that went quiet.

    Talks to jobstate only through `client` and to RunPod only through `runpod` (None: the
    simulated worker, nothing to ask). Safe to run in several processes at once.
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
        self.rules = Rules(timedelta(seconds=hard_deadline), output_prefix)
        self.page_size = page_size
        self._limit = asyncio.Semaphore(concurrency)
        self._clock = clock

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        """`run_once` every `interval` seconds until `stop` is set; a failed round is logged."""
        while not stop.is_set():
            try:
                summary = await self.run_once()
            except JobStateError as exc:
                log.warning("reconcile round failed: %s %s", type(exc).__name__, exc)
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

        Raises JobStateError only when the listing itself fails.
        """
        now = self._clock()
        summary: Counter[str] = Counter()
        token = ""
        while True:
            page = await self.client.list_page(
                "",  # every user's jobs
                statuses=UNSETTLED,
                updated_before=now - self.stale_after,
                page_size=self.page_size,
                page_token=token,
            )
            outcomes = await asyncio.gather(*(self._settle(job, now) for job in page.jobs))
            summary.update(outcomes)
            if page.jobs:
                summary["examined"] += len(page.jobs)
            token = page.next_page_token
            if not token:
                return summary

    async def _settle(self, job: Job, now: datetime) -> str:
        async with self._limit:
            try:
                verdict = judge(job, now, self.rules, await self._ask(job))
                if verdict.note:
                    level = logging.INFO if verdict.change else logging.WARNING
                    log.log(level, "reconcile %s: %s", job.job_id, verdict.note)
                if verdict.change is None:
                    return verdict.outcome
                return await self._apply(job, verdict, verdict.change)
            except JobStateError as exc:
                log.warning("reconcile %s: %s %s", job.job_id, type(exc).__name__, exc)
                return "errors"

    async def _ask(self, job: Job) -> Answer:
        """RunPod's status body for `job`, or why there is none."""
        if self.runpod is None or not job.external_id:
            return NOT_ASKED
        try:
            return await self.runpod.status(job.external_id)
        except WorkerJobNotFound:
            return GONE
        except WorkerError as exc:
            log.warning("reconcile %s: cannot ask RunPod: %s", job.job_id, exc)
            return UNREACHABLE

    async def _apply(self, job: Job, verdict: Verdict, change: Change) -> str:
        if verdict.silence:
            # NOTE: a verdict from silence (not from RunPod's word) must not overrule a worker
            # that reported since the listing; re-read and give way if the job moved. A report
            # in the instant between this read and FailJob can still lose; RunPod's own
            # terminal states are facts and need no such check.
            current = await self.client.get_job(job.job_id)
            if current.version != job.version:
                return "raced"
        try:
            await apply_change(self.client, job.job_id, change)
        except (FailedPrecondition, NotFound):
            return "raced"  # someone else settled (or removed) it first
        # NOTE: a restated terminal status (another reconciler came first with the same verdict)
        # is indistinguishable from our own change here, so both count as ours.
        log.info("reconcile %s: %s (%s)", job.job_id, verdict.outcome, change)
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

    client = connect(config)
    runpod: RunPodClient | None = None
    if config.runpod_endpoint_url:
        runpod = RunPodClient(
            config.runpod_endpoint_url, config.runpod_api_key, config.runpod_timeout, Metrics()
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
    log.info("jobstate reconcile runs on the %s event loop", loop_name())
    await run_until(config, stop)
    return 0


def main(environ: Mapping[str, str]) -> int:
    """`jobstate reconcile`: runs until SIGTERM/SIGINT (exit 0); bad configuration exits 2."""
    try:
        config = ReconcileConfig.from_env(environ)
        logs.setup(environ.get("JOBSTATE_LOG_LEVEL"))
        factory = loop_factory(environ)
    except ConfigError as exc:
        print(f"jobstate reconcile: {exc}", file=sys.stderr)
        return 2
    return run(_main(config), factory)
