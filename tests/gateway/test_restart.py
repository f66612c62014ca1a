"""The service dies (kill -9) and comes back: sockets stay open and miss nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from gwstack import S3, Stack, gateway_config
from support.fakerunpod import FakeRunPod
from support.poll import eventually
from support.processes import ServeProcess
from support.servers import sqlite_url

from gateway.server import Gateway


@pytest.fixture
async def service_process(tmp_path: Path) -> AsyncIterator[ServeProcess]:
    process = ServeProcess(database_url=sqlite_url(tmp_path), log_path=tmp_path / "serve.log")
    await process.start()
    yield process
    await process.stop()


async def test_kill_9_of_the_service_loses_no_message(
    service_process: ServeProcess, runpod: FakeRunPod, s3: S3, http: aiohttp.ClientSession
) -> None:
    config = gateway_config(service_process.port, runpod, s3)
    gateway = Gateway(config)
    await gateway.start()
    try:
        stack = Stack(gateway, http, runpod, s3)
        job_id = await stack.start_job()
        sockets = [await stack.socket(job_id) for _ in range(2)]
        for ws in sockets:
            assert (await ws.next())["version"] == 2
        for value in (10, 20):
            assert (await stack.callback(job_id, {"status": "progress", "progress": value}))[
                0
            ] == 200
        for ws in sockets:
            await ws.until(4)

        await service_process.kill()
        status, body = await stack.callback(job_id, {"status": "progress", "progress": 30})
        assert status == 503, body
        # Again on its port (the gateway's target names it), however long another socket
        # that took the port meanwhile keeps it.
        await service_process.start()

        async def accepted() -> bool:
            got, _ = await stack.callback(job_id, {"status": "progress", "progress": 30})
            return got == 200

        await eventually(accepted, "the gateway to reach the restarted service")
        await stack.callback(job_id, {"status": "progress", "progress": 40})
        await stack.callback(
            job_id, {"status": "complete", "output_key": f"exports/{job_id}/k.mp4"}
        )
        for ws in sockets:
            after = await ws.until(7)
            assert [(m["type"], m["version"]) for m in after] == [
                ("progress", 5),
                ("progress", 6),
                ("complete", 7),
            ]
            assert await ws.close_code() == 1000  # stayed open until the job finished
    finally:
        await gateway.stop()
