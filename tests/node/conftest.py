"""Fixtures for the Node tests: jobstate-client.js run by `node` against the real system.

Every test here skips, with the reason, when `node` is not on PATH. The system is the browser
tests' one (`jobstate serve` and `jobstate gateway` subprocesses, moto's S3) submitting to a
fake RunPod, so each test sets the job's pace itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from browser.system import System, s3_server
from support.fakerunpod import FakeRunPod

from node.noderun import HARNESS, NODE, NodeRun

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if NODE is not None:
        return
    skip = pytest.mark.skip(
        reason="node not found on PATH: install Node.js 18+ to test jobstate-client.js under Node"
    )
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    with s3_server() as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runpod() -> AsyncIterator[FakeRunPod]:
    async with FakeRunPod() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def system(
    tmp_path_factory: pytest.TempPathFactory, s3_url: str, runpod: FakeRunPod
) -> AsyncIterator[System]:
    """Service + gateway (development: /api/dev/token works) submitting to the fake RunPod."""
    workdir = tmp_path_factory.mktemp("node") / "system"
    await asyncio.to_thread(workdir.mkdir, parents=True)
    system = System(workdir=workdir, s3_url=s3_url, runpod_url=runpod.url)
    try:
        await system.start()
        yield system
    finally:
        await system.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def run_node(
    tmp_path: Path, runpod: FakeRunPod
) -> AsyncIterator[Callable[..., Awaitable[NodeRun]]]:
    """Factory: start `node [flags] harness.js <config>`; killed after the test if still
    running."""
    assert NODE is not None
    runpod.reset()
    started: list[NodeRun] = []

    async def run(config: dict[str, Any], *flags: str) -> NodeRun:
        stderr = tmp_path / f"node{len(started)}.stderr"
        with stderr.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                NODE,
                *flags,
                str(HARNESS),
                json.dumps(config),
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        started.append(NodeRun(proc, stderr))
        return started[-1]

    try:
        yield run
    finally:
        for node in started:
            if node.proc.returncode is None:
                node.proc.kill()
                await node.proc.wait()
