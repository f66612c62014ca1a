"""The disk fills up under `jobstate serve` (SQLite), then has room again.

"Full" is RLIMIT_FSIZE set on the running process with prlimit: a write past the limit fails
with EFBIG exactly as one past the end of a full disk fails with ENOSPC (CPython ignores
SIGXFSZ), without needing a small filesystem. Writes must fail with UNAVAILABLE and a clear
message, reads keep working, writes resume by themselves once there is room, and the database
is intact: `PRAGMA integrity_check` is ok and every acknowledged update is there.
"""

from __future__ import annotations

import resource
import sqlite3
from pathlib import Path

import grpc
from support.poll import eventually
from support.processes import ServeProcess
from support.servers import create_job, history, sqlite_url, stub

from jobstate.v1 import jobstate_pb2 as pb

MESSAGE = "m" * 1000
ROOM = 64 * 1024  # bytes a file may still grow by once the "disk" is nearly full


def _limit(pid: int, size: int) -> None:
    # Only the soft limit: raising it again needs no privilege.
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))


def _largest_file(directory: Path) -> int:
    return max(p.stat().st_size for p in directory.glob("jobstate.db*"))


async def test_disk_full_fails_cleanly_and_recovers_without_corruption(tmp_path: Path) -> None:
    proc = ServeProcess(database_url=sqlite_url(tmp_path), log_path=tmp_path / "serve.log")
    await proc.start()
    acked: list[tuple[int, float]] = []
    failures: list[tuple[grpc.StatusCode, str]] = []
    step = 0
    try:
        async with grpc.aio.insecure_channel(proc.target) as channel:
            client = stub(channel)
            await create_job(client, "full")

            async def report() -> bool:
                nonlocal step
                step += 1
                request = pb.ReportProgressRequest(
                    job_id="full", progress=step / 1000, message=f"{step} {MESSAGE}"
                )
                try:
                    reply = await client.ReportProgress(request, timeout=10)
                except grpc.aio.AioRpcError as exc:
                    failures.append((exc.code(), exc.details() or ""))
                    return False
                acked.append((reply.job.version, reply.job.progress))
                return True

            assert await report()
            _limit(proc.pid, _largest_file(tmp_path) + ROOM)

            async def refused() -> bool:
                return not await report()

            await eventually(refused, what="a write to fail on the full disk")
            assert failures == [
                (grpc.StatusCode.UNAVAILABLE, "the job store is unavailable; retry shortly")
            ]
            # Reads still work and show the last acknowledged state.
            job = (await client.GetJob(pb.GetJobRequest(job_id="full"), timeout=10)).job
            assert (job.version, job.progress) == acked[-1]

            _limit(proc.pid, resource.RLIM_INFINITY)  # room again
            await eventually(report, what="writes to succeed once there is room again")
            await client.CompleteJob(
                pb.CompleteJobRequest(job_id="full", output_key="exports/full.mp4"), timeout=10
            )
        assert await proc.stop() == 0
    finally:
        await proc.kill()

    with sqlite3.connect(tmp_path / "jobstate.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    restarted = ServeProcess(database_url=sqlite_url(tmp_path), log_path=tmp_path / "serve.log")
    await restarted.start()
    try:
        async with grpc.aio.insecure_channel(restarted.target) as channel:
            replay = await history(stub(channel), "full", 1, timeout=30)
    finally:
        await restarted.stop()
    versions = [m.job.version for m in replay]
    assert versions == list(range(2, versions[-1] + 1))
    progress_at = {m.job.version: m.job.progress for m in replay}
    assert [(v, p) for v, p in acked if progress_at.get(v) != p] == []
    assert replay[-1].type == pb.EVENT_TYPE_COMPLETE
