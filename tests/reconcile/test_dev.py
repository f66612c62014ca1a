"""`jobstate dev` runs the reconciler beside its service and gateway."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import grpc
from support.poll import eventually
from support.processes import REPO

from gateway.verdicts import NEVER_SUBMITTED
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc


async def test_dev_reconciles_a_job_that_was_never_submitted(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBSTATE_", "GATEWAY_"))}
    env.pop("ENVIRONMENT", None)
    env.update(
        JOBSTATE_LISTEN="127.0.0.1:0",
        GATEWAY_LISTEN="127.0.0.1:0",
        JOBSTATE_STALE_AFTER="0.05",
        JOBSTATE_RECONCILE_INTERVAL="0.1",
        PYTHONPATH=str(REPO),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jobstate_cli", "dev", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        target = ""
        while not target:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, "jobstate dev exited before printing its service address"
            if line.startswith("jobstate service on "):
                target = line.split()[3]
        async with grpc.aio.insecure_channel(target) as channel:
            client = pb_grpc.JobStateServiceStub(channel)
            job = (await client.CreateJob(pb.CreateJobRequest(user_id="u1"), timeout=10)).job

            async def settled() -> bool:
                reply = await client.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=10)
                return reply.job.status == pb.JOB_STATUS_ERROR

            await eventually(settled, what="jobstate dev's reconciler to fail the unsubmitted job")
            reply = await client.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=10)
        assert reply.job.error == NEVER_SUBMITTED
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
