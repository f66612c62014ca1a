"""JOBSTATE_EVENT_LOOP: uvloop by default, the standard loop on request, anything else refused,
for every long-running command."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.servers import sqlite_url

WAIT = 60.0


def _command(name: str, tmp_path: Path) -> list[str]:
    address = "127.0.0.1:0"  # any free port: the test reads one log line and stops it
    match name:
        case "serve":
            return ["serve", "--listen", address, "--database-url", sqlite_url(tmp_path)]
        case "gateway":
            return ["gateway", "--listen", address]
        case _:
            return [name]


def _env(tmp_path: Path, loop: str | None) -> dict[str, str]:
    env = {**os.environ, "ENVIRONMENT": "development", "JOBSTATE_TARGET": "127.0.0.1:1"}
    env.pop("JOBSTATE_EVENT_LOOP", None)
    if loop is not None:
        env["JOBSTATE_EVENT_LOOP"] = loop
    return env


async def _loop_line(tmp_path: Path, command: str, loop: str | None) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobstate_cli",
        *_command(command, tmp_path),
        cwd=tmp_path,
        env=_env(tmp_path, loop),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert proc.stderr is not None
    try:
        while line := await asyncio.wait_for(proc.stderr.readline(), WAIT):
            if b"event loop" in line:
                return line.decode()
        raise AssertionError(f"jobstate {command} exited before naming its event loop")
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), WAIT)


@pytest.mark.parametrize("command", ["serve", "gateway", "reconcile"])
@pytest.mark.parametrize(("loop", "expected"), [(None, "uvloop"), ("asyncio", "asyncio")])
async def test_each_command_runs_on_the_loop_asked_for(
    tmp_path: Path, command: str, loop: str | None, expected: str
) -> None:
    line = await _loop_line(tmp_path, command, loop)
    assert f"jobstate {command} runs on the {expected} event loop" in line


@pytest.mark.parametrize("command", ["serve", "gateway", "reconcile", "dev"])
def test_an_unknown_loop_stops_the_command_with_one_line(tmp_path: Path, command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jobstate_cli", *_command(command, tmp_path)],
        cwd=tmp_path,
        env=_env(tmp_path, "trio"),
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert (result.returncode, result.stderr.strip().splitlines()) == (
        2,
        [f"jobstate {command}: JOBSTATE_EVENT_LOOP must be one of uvloop, asyncio, got 'trio'"],
    )
