"""bench/noop_server.py's layers, the floors `progress_rpc.py --floor` measures: each answers
ReportProgress, and the SQLite layers really write the change before answering — a floor that
skipped its work would make jobstate look slower than it is."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from support.ports import server_port

from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parent.parent
SERVER = REPO / "bench" / "noop_server.py"
WAIT = 60.0


@pytest.fixture(params=["noop", "await", "hop", "sqlite", "sqlite-loop"])
def floor(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """One layer's server: (layer, port); its database file, if any, in tmp_path."""
    layer: str = request.param
    port = server_port()
    process = subprocess.Popen(
        [sys.executable, str(SERVER), str(port), layer, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield layer, port
    process.terminate()
    try:
        process.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def test_each_layer_answers_and_the_sqlite_ones_commit_first(
    floor: tuple[str, int], tmp_path: Path
) -> None:
    layer, port = floor
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.JobStateServiceStub(channel)
        created = await stub.CreateJob(
            pb.CreateJobRequest(job_id="floor-1", user_id="u", kind="k"),
            timeout=WAIT,
            wait_for_ready=True,
        )
        answer = await stub.ReportProgress(
            pb.ReportProgressRequest(job_id="floor-1", progress=42.0), timeout=WAIT
        )
    assert created.job.job_id == answer.job.job_id == "floor-1"
    database = tmp_path / "floor.db"
    if not layer.startswith("sqlite"):
        assert not database.exists()
        return
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT progress, version FROM jobs").fetchall() == [(42.0, 2)]
        assert db.execute("SELECT job_id, progress FROM events").fetchall() == [("floor-1", 42.0)]


def test_an_unknown_layer_or_a_missing_directory_is_refused() -> None:
    unknown = subprocess.run(
        [sys.executable, str(SERVER), "1", "fast"], capture_output=True, text=True, timeout=WAIT
    )
    assert unknown.returncode != 0
    assert "unknown layer 'fast'" in unknown.stderr
    missing = subprocess.run(
        [sys.executable, str(SERVER), "1", "sqlite"], capture_output=True, text=True, timeout=WAIT
    )
    assert missing.returncode != 0
    assert "needs a DIRECTORY" in missing.stderr
