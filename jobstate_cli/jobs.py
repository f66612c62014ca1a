"""`jobstate jobs list|get|watch|cancel`: operator commands over `jobstate.client`.

Configuration is the other commands': JOBSTATE_TARGET (default 127.0.0.1:50051),
JOBSTATE_API_TOKEN and JOBSTATE_TLS_CA; the flags `--jobstate-target` and `--tls-ca` win. The
token is read from the environment only, because a flag would show in `ps`. Every error the
service or the connection produces is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway.endpoints import check_runpod, runpod_endpoint_url
from gateway.metrics import Metrics
from gateway.runpod import RunPodClient
from gateway.worker import WorkerError
from jobstate.client import (
    DeadlineExceeded,
    Job,
    JobStateClient,
    JobStateError,
    Status,
    Unauthenticated,
    Unavailable,
)
from jobstate.config import ConfigError
from jobstate_cli.render import TABLE_HEADERS, columns, details, job_dict, printable, table_row
from jobstate_cli.watchview import PlainView, TerminalView, WatchView

DEFAULT_TARGET = "127.0.0.1:50051"
TIMEOUT = 5.0  # seconds each call may take, waiting for a connection included
PAGE_SIZE = 100
EXIT_FAILED = 1
EXIT_USAGE = 2  # what argparse uses for a usage error, so configuration errors match
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a killed writer
# `watch` reports the job's outcome in its exit code, so its own failure needs another one.
WATCH_EXIT = {Status.COMPLETE: 0, Status.ERROR: 1, Status.CANCELLED: 2}
EXIT_UNWATCHABLE = 3
HEALTH_DEADLINE = 2.0
HEALTH_INTERVAL = 0.5
STATUS_STYLES = {
    Status.PENDING: "dim",
    Status.PROCESSING: "cyan",
    Status.COMPLETE: "green",
    Status.ERROR: "red",
    Status.CANCELLED: "yellow",
}
JOBS_DESCRIPTION = """\
Operator commands: list, inspect, watch and cancel jobs.

The service is JOBSTATE_TARGET (default 127.0.0.1:50051) or --jobstate-target; TLS trusts the
CA bundle in JOBSTATE_TLS_CA or --tls-ca; the service token is read from JOBSTATE_API_TOKEN
only (a flag would show in `ps`). `cancel` also cancels the job's RunPod job, with
RUNPOD_ENDPOINT_URL (or RUNPOD_ENDPOINT) and RUNPOD_API_KEY as the gateway reads them.
Errors are one line on stderr.
"""
WATCH_DESCRIPTION = """\
Follow a job to its end: a live progress bar on a terminal, otherwise one line per event
(time, version, status, progress, message). A restart of the service is waited for, and the
watch resumes where it was without repeating a version.
"""
WATCH_EPILOG = """\
exit codes:
  0    the job completed
  1    the job failed (status error)
  2    the job was cancelled (also: a usage or configuration error, said on stderr)
  3    the job could not be watched: no such job, the token was refused, or the service
       did not answer within 5 s (a service that goes away mid-watch is waited for)
  130  interrupted (Ctrl-C)
  141  the reader of the output went away (`| head`)
"""

Command = Callable[[JobStateClient, argparse.Namespace], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class ClientConfig:
    target: str = DEFAULT_TARGET
    api_token: str = field(default="", repr=False)
    tls_ca: str = ""

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], *, target: str | None = None, tls_ca: str | None = None
    ) -> ClientConfig:
        """Flags (when given) over variables over defaults; ConfigError names the source."""
        if target is not None and not target.strip():
            raise ConfigError("--jobstate-target must not be empty")
        token = environ.get("JOBSTATE_API_TOKEN", "")
        if token and not (token.isascii() and token.isprintable()):
            raise ConfigError("JOBSTATE_API_TOKEN must be printable ASCII (it is sent as a header)")
        ca_name = "--tls-ca" if tls_ca is not None else "JOBSTATE_TLS_CA"
        ca = (tls_ca if tls_ca is not None else environ.get("JOBSTATE_TLS_CA", "")).strip()
        if tls_ca is not None and not ca:
            raise ConfigError("--tls-ca must not be empty")
        if ca:
            _check_ca(ca, ca_name)
        return cls(
            target=(target or environ.get("JOBSTATE_TARGET", "")).strip() or DEFAULT_TARGET,
            api_token=token,
            tls_ca=ca,
        )


def _check_ca(path: str, name: str) -> None:
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{name} {path!r} cannot be read: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ConfigError(f"{name} {path!r} holds no PEM certificate")


def _statuses(value: str) -> list[Status]:
    allowed = ", ".join(status.value for status in Status)
    chosen = []
    for name in value.split(","):
        try:
            chosen.append(Status(name.strip().lower()))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"unknown status {name.strip()!r}; choose from {allowed}"
            ) from None
    return chosen


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {value!r}")
    return int(value)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `jobs` and its four commands to the `jobstate` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--jobstate-target",
        metavar="TARGET",
        help=f"gRPC target (env JOBSTATE_TARGET, default {DEFAULT_TARGET})",
    )
    common.add_argument(
        "--tls-ca",
        metavar="PEM",
        help="CA bundle that signed the service's certificate (env JOBSTATE_TLS_CA)",
    )
    jobs = subparsers.add_parser(
        "jobs",
        help="list, inspect, watch and cancel jobs",
        description=JOBS_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", parents=[common], help="jobs, newest first")
    listing.add_argument("--user", default="", help="only this user's jobs")
    listing.add_argument(
        "--status",
        type=_statuses,
        action="extend",
        default=[],
        help="only jobs in these statuses (repeat it or separate with commas): "
        + ", ".join(status.value for status in Status),
    )
    listing.add_argument("--limit", type=_positive, default=50, help="at most N jobs (50)")
    listing.add_argument("--json", action="store_true", help="one JSON array, every field")
    listing.set_defaults(run=_list, failure_exit=EXIT_FAILED)

    get = commands.add_parser("get", parents=[common], help="every field of one job")
    get.add_argument("job_id", metavar="JOB_ID")
    get.add_argument("--json", action="store_true", help="one JSON object")
    get.set_defaults(run=_get, failure_exit=EXIT_FAILED)

    watch = commands.add_parser(
        "watch",
        parents=[common],
        help="follow a job to its end (live progress bar on a terminal, lines otherwise)",
        description=WATCH_DESCRIPTION,
        epilog=WATCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    watch.add_argument("job_id", metavar="JOB_ID")
    watch.set_defaults(run=_watch, failure_exit=EXIT_UNWATCHABLE)

    cancel = commands.add_parser(
        "cancel", parents=[common], help="cancel a job, and its RunPod job (RUNPOD_* variables)"
    )
    cancel.add_argument("job_id", metavar="JOB_ID")
    cancel.add_argument("--reason", default="", help="kept as the job's error text")
    cancel.set_defaults(run=_cancel, failure_exit=EXIT_FAILED)


def main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    name = f"jobstate jobs {args.jobs_command}"
    # What went wrong is said here, in one line; the libraries' own warnings (RunPod's answer,
    # say) would otherwise reach stderr through logging's last-resort handler.
    logging.getLogger().addHandler(logging.NullHandler())
    try:
        config = ClientConfig.from_env(environ, target=args.jobstate_target, tls_ca=args.tls_ca)
        if args.jobs_command == "cancel":
            args.runpod = _runpod(environ)
    except ConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_connect(config, args.run, args))
    except JobStateError as exc:
        print(f"{name}: {printable(describe(exc, config.target))}", file=sys.stderr)
        return int(args.failure_exit)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader left (`| head`): stop as SIGPIPE would, quietly. stdout now points at
        # /dev/null so the interpreter's last flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def describe(error: JobStateError, target: str) -> str:
    """One line for the operator: the server's message, with where it came from when the
    trouble is the connection or the token."""
    if isinstance(error, DeadlineExceeded):
        return f"no answer from jobstate at {target} within {TIMEOUT:g} s ({error})"
    if isinstance(error, Unavailable):
        return f"jobstate at {target} is unavailable: {error}"
    if isinstance(error, Unauthenticated):
        return f"jobstate at {target} refused the call: {error} (check JOBSTATE_API_TOKEN)"
    return str(error)


async def _connect(config: ClientConfig, run: Command, args: argparse.Namespace) -> int:
    async with JobStateClient(
        config.target,
        api_token=config.api_token or None,
        tls_ca=config.tls_ca or None,
        timeout=TIMEOUT,
    ) as client:
        return await run(client, args)


async def _list(client: JobStateClient, args: argparse.Namespace) -> int:
    jobs: list[Job] = []
    token = ""
    while len(jobs) < args.limit:
        page = await client.list_page(
            args.user,
            statuses=args.status,
            page_size=min(args.limit - len(jobs), PAGE_SIZE),
            page_token=token,
        )
        jobs.extend(page.jobs)
        token = page.next_page_token
        if not token:
            break
    if args.json:
        print(json.dumps([job_dict(job) for job in jobs], indent=2))
        return 0
    now = datetime.now(UTC)
    rows = [table_row(job, now) for job in jobs]
    if not sys.stdout.isatty():
        print(columns([TABLE_HEADERS, *rows]))
        return 0
    table = Table(box=box.SIMPLE_HEAD)
    for header in TABLE_HEADERS:
        table.add_column(header, justify="right" if header in ("PROGRESS", "AGE") else "left")
    for job, row in zip(jobs, rows, strict=True):
        cells = [Text(cell) for cell in row]
        cells[3].stylize(STATUS_STYLES[job.status])
        table.add_row(*cells)
    Console(highlight=False).print(table)
    return 0


async def _get(client: JobStateClient, args: argparse.Namespace) -> int:
    job = await client.get_job(args.job_id)
    print(json.dumps(job_dict(job), indent=2) if args.json else details(job))
    return 0


def _runpod(environ: Mapping[str, str]) -> tuple[str, str]:
    """RunPod's endpoint URL and key as the gateway reads them; ("", "") without RunPod."""
    endpoint_url = runpod_endpoint_url(environ)
    api_key = environ.get("RUNPOD_API_KEY", "").strip()
    check_runpod(endpoint_url, api_key)
    return endpoint_url, api_key


async def _cancel(client: JobStateClient, args: argparse.Namespace) -> int:
    job = await client.cancel_job(args.job_id, args.reason)
    print(job.status.value, flush=True)
    if not job.external_id:
        return 0  # never handed to RunPod
    # Asked again when the job was already cancelled: RunPod's cancel is idempotent, and an
    # operator repeating the command after a failed try must reach it.
    not_cancelled = f"jobstate jobs cancel: RunPod job {job.external_id} was not cancelled"
    endpoint_url, api_key = args.runpod
    if not endpoint_url:
        print(f"{not_cancelled}: RUNPOD_ENDPOINT_URL is not set", file=sys.stderr)
        return 0
    runpod = RunPodClient(endpoint_url, api_key, TIMEOUT, Metrics())
    try:
        await runpod.cancel(job.external_id)
    except WorkerError as exc:
        print(f"{not_cancelled}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await runpod.close()
    return 0


async def _watch(client: JobStateClient, args: argparse.Namespace) -> int:
    # The watch itself waits for the service indefinitely; this first call has a deadline,
    # so a missing job, a refused token or a service that is not there fail at once.
    job = await client.get_job(args.job_id)
    # NOTE: the terminal decides, not rich's FORCE_COLOR/TTY_COMPATIBLE: those ask for colour,
    # and a piped watch must stay one line per event.
    view: WatchView = TerminalView(job, Console()) if sys.stdout.isatty() else PlainView()
    lost = asyncio.Event()

    def interrupted(error: JobStateError) -> None:
        view.reconnecting(error)
        lost.set()

    with view:
        async with _probing(client, view, lost):
            async for event in client.watch(job.job_id, on_interrupt=interrupted):
                view.show(event)
                job = event.job
    return WATCH_EXIT.get(job.status, EXIT_UNWATCHABLE)


@asynccontextmanager
async def _probing(
    client: JobStateClient, view: WatchView, lost: asyncio.Event
) -> AsyncIterator[None]:
    """While the body runs: each time `lost` is set, ask the service's health until it
    answers, then tell the view it is back. (A resumed stream sends nothing until the job
    changes, so the stream alone cannot tell a quiet job from a lost connection.)"""

    async def announce_return() -> None:
        while True:
            await lost.wait()
            if await client.healthy(HEALTH_DEADLINE):
                lost.clear()
                view.resumed()
            else:
                await asyncio.sleep(HEALTH_INTERVAL)

    task = asyncio.create_task(announce_return())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
