"""Fixtures for the client tests: a real `jobstate serve` in process (SQLite, loopback) and a
client connected to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.servers import service

from jobstate.client import JobStateClient
from jobstate.server import RunningServer


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with service(tmp_path) as running:
        yield running


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[JobStateClient]:
    async with JobStateClient(f"127.0.0.1:{server.port}", timeout=10) as connected:
        yield connected
