"""JOBSTATE_EVENT_LOOP: uvloop by default, the standard loop on request, anything else refused."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from support.servers import REPO, free_port, run_serve, sqlite_url

WAIT = 60.0


async def _loop_line(tmp_path: Path, loop: str | None) -> str:
    env = {**os.environ, "ENVIRONMENT": "development"}
    env.pop("JOBSTATE_EVENT_LOOP", None)
    if loop is not None:
        env["JOBSTATE_EVENT_LOOP"] = loop
    address = f"127.0.0.1:{free_port()}"
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "jobstate_cli", "serve", "--listen", address),
        *("--database-url", sqlite_url(tmp_path)),
        cwd=REPO,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        while line := await asyncio.wait_for(proc.stderr.readline(), WAIT):
            if b"event loop" in line:
                return line.decode()
        raise AssertionError("jobstate serve exited before naming its event loop")
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), WAIT)


@pytest.mark.parametrize(("loop", "expected"), [(None, "uvloop"), ("asyncio", "asyncio")])
async def test_serve_runs_on_the_loop_asked_for(
    tmp_path: Path, loop: str | None, expected: str
) -> None:
    assert f"runs on the {expected} event loop" in await _loop_line(tmp_path, loop)


def test_an_unknown_loop_stops_serve_with_one_line() -> None:
    result = run_serve("--listen", "127.0.0.1:0", env={"JOBSTATE_EVENT_LOOP": "trio"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "jobstate serve: JOBSTATE_EVENT_LOOP must be one of uvloop, asyncio, got 'trio'"
    ]
