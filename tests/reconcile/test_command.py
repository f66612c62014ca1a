"""`jobstate reconcile` as a process: configuration from the environment, the service token,
a loop that settles jobs as they go quiet, a clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from support.fakerunpod import FakeRunPod
from support.poll import eventually
from support.processes import REPO
from support.servers import service

from gateway.reconcile import ReconcileConfig, run_until
from jobstate.client import JobStateClient, Status

TOKEN = "service-token-for-tests-0123456789abcdef"


def reconcile_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBSTATE_", "RUNPOD_"))}
    return {**env, **extra}


async def test_reconcile_command_settles_quiet_jobs_then_exits_on_sigterm(
    tmp_path: Path, fake_runpod: FakeRunPod
) -> None:
    async with service(tmp_path, api_token=TOKEN) as server:
        target = f"127.0.0.1:{server.port}"
        client = JobStateClient(target, api_token=TOKEN)
        job = await client.create_job("u1", "overlay", {})
        await client.mark_submitted(job.job_id, "rp-9")
        fake_runpod.jobs["rp-9"] = (
            200,
            {"status": "COMPLETED", "output": {"output_key": f"exports/{job.job_id}/x.mp4"}},
        )
        env = reconcile_env(
            JOBSTATE_TARGET=target,
            JOBSTATE_API_TOKEN=TOKEN,
            RUNPOD_ENDPOINT_URL=fake_runpod.url,
            RUNPOD_API_KEY="rp-key",
            JOBSTATE_STALE_AFTER="0.01",
            JOBSTATE_RECONCILE_INTERVAL="0.2",
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jobstate_cli", "reconcile", cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:

            async def complete() -> bool:
                return (await client.get_job(job.job_id)).status == Status.COMPLETE

            await eventually(complete, what="the reconciler to complete the job")
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                _, stderr = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await client.close()
    assert proc.returncode == 0, stderr.decode()
    assert f"exports/{job.job_id}/x.mp4".encode() in stderr  # the outcome is logged
    assert TOKEN.encode() not in stderr and b"rp-key" not in stderr
    assert ("GET", "/status/rp-9", "Bearer rp-key") in fake_runpod.calls()


async def reconcile_outcome(**env: str) -> tuple[int | None, str]:
    """Exit code and stderr of a `jobstate reconcile` that should stop at start."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jobstate_cli", "reconcile", cwd=REPO, env=reconcile_env(**env),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None, "still running after 60 s"
    return proc.returncode, stderr.decode()


async def test_bad_configuration_exits_2_with_one_clear_line() -> None:
    cases = {
        "stale-after": {"JOBSTATE_STALE_AFTER": "ten minutes"},
        "weak-token": {"JOBSTATE_API_TOKEN": "t0ken"},
        "weak-token-in-production": {"ENVIRONMENT": "production", "JOBSTATE_API_TOKEN": "t0ken"},
        "environment": {"ENVIRONMENT": "staging"},
        "target": {"JOBSTATE_TARGET": "::::"},
        "log-level": {"JOBSTATE_LOG_LEVEL": "loud"},
        "output-prefix": {"R2_OUTPUT_PREFIX": "exports"},
    }
    results = await asyncio.gather(*(reconcile_outcome(**env) for env in cases.values()))
    prefix = "jobstate reconcile: "
    weak = prefix + "JOBSTATE_API_TOKEN must be at least 32 bytes in production, got 5\n"
    assert dict(zip(cases, results, strict=True)) == {
        "stale-after": (
            2,
            prefix + "JOBSTATE_STALE_AFTER must be a number of seconds, got 'ten minutes'\n",
        ),
        "weak-token": (2, weak),
        "weak-token-in-production": (2, weak),
        "environment": (
            2,
            prefix + "ENVIRONMENT must be development or production, got 'staging'\n",
        ),
        "target": (
            2,
            prefix + "JOBSTATE_TARGET must be host:port, ipv4:address[:port][,...], "
            "ipv6:address or [address]:port[,...], dns:[//authority/]host[:port] or unix:path, "
            "got '::::'\n",
        ),
        "log-level": (
            2,
            prefix + "JOBSTATE_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got 'LOUD'\n",
        ),
        "output-prefix": (
            2,
            prefix + "R2_OUTPUT_PREFIX must end with '/' (a folder, e.g. exports/), "
            "got 'exports'\n",
        ),
    }


async def test_stop_cancels_the_round_in_flight() -> None:
    """A round waiting on a service that never answers (here: a listener that accepts and
    stays silent, so the ListJobs waits for its deadline) ends as soon as stop is set."""
    accepted = asyncio.Event()
    peers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer)
        accepted.set()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    # An hour's deadline: without the cancel, stopping would wait for it.
    config = replace(ReconcileConfig(jobstate_target=f"127.0.0.1:{port}"), rpc_timeout=3600)
    stop = asyncio.Event()
    reconciling = asyncio.create_task(run_until(config, stop))
    try:
        await asyncio.wait_for(accepted.wait(), 60)
        stop.set()
        await asyncio.wait_for(asyncio.shield(reconciling), 60)
    finally:
        reconciling.cancel()
        for writer in peers:
            writer.close()
        listener.close()
        await listener.wait_closed()


def test_runpod_endpoint_without_key_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jobstate_cli", "reconcile"],
        cwd=REPO,
        env=reconcile_env(RUNPOD_ENDPOINT_URL="https://api.runpod.ai/v2/abc"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "jobstate reconcile: RUNPOD_API_KEY is required when RUNPOD_ENDPOINT_URL is set\n"
    )
