"""Fixtures for `jobstate jobs ...`: a real `jobstate serve` subprocess on loopback, the real
client to change jobs with, and the environment that points the command at that service.

Nothing of ours is mocked; output is read from the command's own pipes (or a pty).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.processes import ServeProcess
from support.servers import sqlite_url

from jobstate.client import JobStateClient

from .commands import WAIT, command_env


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[ServeProcess]:
    proc = ServeProcess(database_url=sqlite_url(tmp_path), log_path=tmp_path / "serve.log")
    await proc.start(within=WAIT)
    try:
        yield proc
    finally:
        await proc.kill()


@pytest.fixture
async def client(serve: ServeProcess) -> AsyncIterator[JobStateClient]:
    async with JobStateClient(serve.target, timeout=WAIT) as connected:
        yield connected


@pytest.fixture
def env(serve: ServeProcess) -> dict[str, str]:
    return command_env(serve.target)
