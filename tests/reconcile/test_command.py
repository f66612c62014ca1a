"""`jobstate reconcile` as a process: configuration from the environment, the service token,
a loop that settles jobs as they go quiet, a clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from support.fakerunpod import FakeRunPod
from support.poll import until
from support.servers import REPO, service

from gateway.client import JobStateClient
from gateway.metrics import Metrics
from jobstate.v1 import jobstate_pb2 as pb

TOKEN = "service-token-for-tests"


def reconcile_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBSTATE_", "RUNPOD_"))}
    return {**env, **extra}


async def test_reconcile_command_settles_quiet_jobs_then_exits_on_sigterm(
    tmp_path: Path, fake_runpod: FakeRunPod
) -> None:
    async with service(tmp_path, api_token=TOKEN) as server:
        target = f"127.0.0.1:{server.port}"
        client = JobStateClient(target, api_token=TOKEN, metrics=Metrics())
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
            sys.executable, "-m", "jobstate.cli", "reconcile", cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:

            async def complete() -> bool:
                return (await client.get_job(job.job_id)).status == pb.JOB_STATUS_COMPLETE

            await until(complete, what="the reconciler to complete the job")
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
    assert ("GET", "/status/rp-9", "Bearer rp-key") in fake_runpod.requests


def test_bad_configuration_is_one_clear_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jobstate.cli", "reconcile"],
        cwd=REPO,
        env=reconcile_env(JOBSTATE_STALE_AFTER="ten minutes"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (
        2,
        "jobstate reconcile: JOBSTATE_STALE_AFTER must be a number of seconds, got 'ten minutes'\n",
    )


def test_runpod_endpoint_without_key_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jobstate.cli", "reconcile"],
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
