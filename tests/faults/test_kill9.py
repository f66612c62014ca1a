"""`kill -9` of `jobstate serve` in the middle of a burst of 1,000 concurrent updates.

After a restart on the same database every acknowledged update is in the job's history at the
version it was acknowledged with, and each job's history replays with contiguous versions.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc
import pytest
from support.postgres import database_url
from support.processes import ServeProcess
from support.servers import create_job, history, stub

from jobstate.v1 import jobstate_pb2 as pb

JOBS = 10
UPDATES = 1000
KILL_AFTER = 50  # acknowledgements; the rest of the burst is still in flight


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_every_acknowledged_update_survives_kill_9(backend: str, tmp_path: Path) -> None:
    async with database_url(backend, tmp_path, "jobstate_kill9") as url:
        proc = ServeProcess(database_url=url, log_path=tmp_path / "serve.log")
        await proc.start()
        job_ids = [f"k9-{i}" for i in range(JOBS)]
        acked: list[tuple[str, int, float, str]] = []
        failed: list[grpc.StatusCode] = []
        try:
            async with grpc.aio.insecure_channel(proc.target) as channel:
                client = stub(channel)
                for job_id in job_ids:
                    await create_job(client, job_id)
                    await client.MarkSubmitted(
                        pb.MarkSubmittedRequest(job_id=job_id, external_id="rp"), timeout=10
                    )

                async def update(job_id: str, n: int) -> None:
                    request = pb.ReportProgressRequest(
                        job_id=job_id, progress=n / 10, message=f"update {n}"
                    )
                    try:
                        reply = await client.ReportProgress(request, timeout=30)
                    except grpc.aio.AioRpcError as exc:
                        failed.append(exc.code())
                        return
                    job = reply.job
                    acked.append((job_id, job.version, job.progress, job.message))
                    if len(acked) == KILL_AFTER:
                        proc.send_signal(signal.SIGKILL)  # SIGKILL, right now, mid-burst

                await asyncio.gather(
                    *(update(job_ids[i % JOBS], i // JOBS + 1) for i in range(UPDATES))
                )
        finally:
            await proc.kill()

        assert len(acked) >= KILL_AFTER
        assert failed, "the kill landed after the burst; the test proved nothing"
        assert set(failed) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}

        restarted = ServeProcess(database_url=url, log_path=tmp_path / "serve.log")
        await restarted.start()
        try:
            async with grpc.aio.insecure_channel(restarted.target) as channel:
                client = stub(channel)
                for job_id in job_ids:
                    await client.CancelJob(pb.CancelJobRequest(job_id=job_id), timeout=10)
                    replay = await history(client, job_id, 1, timeout=30)
                    versions = [m.job.version for m in replay]
                    assert versions == list(range(2, versions[-1] + 1)), job_id
                    state = {m.job.version: (m.job.progress, m.job.message) for m in replay}
                    lost = [
                        (v, p, msg)
                        for j, v, p, msg in acked
                        if j == job_id and v > 1 and state.get(v) != (p, msg)
                    ]
                    assert lost == [], f"{job_id}: acknowledged, then lost: {lost[:5]}"
        finally:
            await restarted.stop()
