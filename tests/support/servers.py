"""Real jobstate servers for tests: in-process (`service`) or a `jobstate serve` subprocess."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jobstate.config import ServiceConfig
from jobstate.server import RunningServer, start_server
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[2]


def sqlite_url(directory: Path, name: str = "jobstate.db") -> str:
    return f"sqlite+aiosqlite:///{directory / name}"


@asynccontextmanager
async def service(directory: Path, **config: Any) -> AsyncIterator[RunningServer]:
    """A started in-process server on 127.0.0.1:0 over SQLite in `directory`; stopped after."""
    config.setdefault("database_url", sqlite_url(directory))
    config.setdefault("environment", "development")
    running = await start_server(ServiceConfig(listen="127.0.0.1:0", **config))
    try:
        yield running
    finally:
        await running.stop(grace=1)


def stub(channel: grpc.aio.Channel) -> pb_grpc.JobStateServiceStub:
    return pb_grpc.JobStateServiceStub(channel)


def free_port() -> int:
    # NOTE: the port could be taken between close and the server's bind; on loopback in a test
    # run that has not been seen, and a failed bind shows up as a clear start-up error.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_serving(target: str, *, within: float = 30.0, **channel_kw: Any) -> None:
    """Poll grpc.health.v1 until SERVING or `within` seconds passed (then AssertionError)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    credentials = channel_kw.pop("credentials", None)
    async with (
        grpc.aio.secure_channel(target, credentials, **channel_kw)
        if credentials
        else grpc.aio.insecure_channel(target, **channel_kw)
    ) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if loop.time() > deadline:
                raise AssertionError(f"{target} did not become SERVING within {within} s")
            await asyncio.sleep(0.05)


@dataclass
class ServeProcess:
    """`jobstate serve` as a child process; `start()` waits until it is SERVING."""

    database_url: str
    env: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    port: int = 0
    proc: asyncio.subprocess.Process | None = None
    log_path: Path | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "jobstate_cli",
            "serve",
            "--listen",
            self.target,
            "--database-url",
            self.database_url,
            *self.args,
        ]

    async def start(self, **wait_kw: Any) -> None:
        """Start (or start again, on the same port) and wait until SERVING."""
        self.port = self.port or free_port()
        env = {**os.environ, "ENVIRONMENT": "development", **self.env}
        stderr = _log_file(self.log_path)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command(), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr
            )
        finally:
            if self.log_path:
                stderr.close()
        try:
            await wait_serving(self.target, **wait_kw)
        except AssertionError:
            await self.kill()
            raise

    async def kill(self) -> None:
        """SIGKILL and reap (no clean shutdown: what `kill -9` does)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def stop(self) -> int | None:
        """SIGTERM and wait for the exit; returns the exit code."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 30)
        return None if self.proc is None else self.proc.returncode


def _log_file(path: Path | None) -> Any:
    return path.open("ab") if path else subprocess.DEVNULL


def run_serve(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`jobstate serve ...` to completion (for configuration errors), output captured."""
    return subprocess.run(
        [sys.executable, "-m", "jobstate_cli", "serve", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def create_job(client: pb_grpc.JobStateServiceStub, job_id: str, **kw: Any) -> pb.Job:
    kw.setdefault("user_id", "u1")
    kw.setdefault("kind", "overlay")
    reply = await client.CreateJob(pb.CreateJobRequest(job_id=job_id, **kw), timeout=10)
    return reply.job


async def history(
    client: pb_grpc.JobStateServiceStub, job_id: str, after: int, **call_kw: Any
) -> list[pb.WatchJobResponse]:
    """Everything a WatchJob from `after` sends until the stream ends (the job must be finished
    or the caller must pass a timeout)."""
    request = pb.WatchJobRequest(job_id=job_id, after_version=after)
    return [item async for item in client.WatchJob(request, **call_kw)]
