from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.fakerunpod import FakeRunPod
from support.servers import service

from gateway.metrics import Metrics
from gateway.runpod import RunPodClient
from jobstate.client import JobStateClient
from jobstate.server import RunningServer

API_KEY = "rp-test-key"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with service(tmp_path) as running:
        yield running


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[JobStateClient]:
    client = JobStateClient(f"127.0.0.1:{server.port}")
    yield client
    await client.close()


@pytest.fixture
async def fake_runpod() -> AsyncIterator[FakeRunPod]:
    async with FakeRunPod() as fake:
        yield fake


@pytest.fixture
async def runpod(fake_runpod: FakeRunPod) -> AsyncIterator[RunPodClient]:
    runpod = RunPodClient(fake_runpod.url, API_KEY, timeout=5, metrics=Metrics())
    yield runpod
    await runpod.close()
