"""The service dies (kill -9) and comes back: sockets stay open and miss nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from gwstack import S3, FakeRunPod, Gateway, Stack, eventually, free_port, gateway_config


class ServiceProcess:
    """`jobstate serve` as a child process on a fixed port and database."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.database = f"sqlite+aiosqlite:///{tmp_path}/jobstate.db"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {**os.environ, "ENVIRONMENT": "development"}
        self.process = await asyncio.create_subprocess_exec(
            *[
                sys.executable,
                "-m",
                "jobstate_cli",
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--database-url",
                self.database,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def serving() -> bool:
                assert self.process is not None and self.process.returncode is None
                try:
                    answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                except grpc.aio.AioRpcError:
                    return False
                return answer.status == health_pb2.HealthCheckResponse.SERVING

            await eventually(serving, within=30)

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), 20)


@pytest.fixture
async def service_process(tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    process = ServiceProcess(tmp_path)
    await process.start()
    yield process
    await process.stop()


async def test_kill_9_of_the_service_loses_no_message(
    service_process: ServiceProcess, runpod: FakeRunPod, s3: S3, http: aiohttp.ClientSession
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
        await service_process.start()

        async def accepted() -> bool:
            got, _ = await stack.callback(job_id, {"status": "progress", "progress": 30})
            return got == 200

        await eventually(accepted, within=30)
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
