"""In-process jobstate servers for tests, and small helpers to talk to one over gRPC
(subprocesses: `support.processes`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc

from jobstate.config import ServiceConfig
from jobstate.server import RunningServer, start_server
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc


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


def stub(channel: grpc.aio.Channel) -> pb_grpc.JobStateServiceAsyncStub:
    return pb_grpc.JobStateServiceStub(channel)


async def create_job(client: pb_grpc.JobStateServiceAsyncStub, job_id: str, **kw: Any) -> pb.Job:
    kw.setdefault("user_id", "u1")
    kw.setdefault("kind", "overlay")
    reply = await client.CreateJob(pb.CreateJobRequest(job_id=job_id, **kw), timeout=10)
    return reply.job


async def history(
    client: pb_grpc.JobStateServiceAsyncStub, job_id: str, after: int, **call_kw: Any
) -> list[pb.WatchJobResponse]:
    """Everything a WatchJob from `after` sends until the stream ends (the job must be finished
    or the caller must pass a timeout)."""
    request = pb.WatchJobRequest(job_id=job_id, after_version=after)
    return [item async for item in client.WatchJob(request, **call_kw)]


async def next_event(
    call: grpc.aio.UnaryStreamCall[pb.WatchJobRequest, pb.WatchJobResponse],
) -> pb.WatchJobResponse:
    """The stream's next response; read() is typed to also return grpc.aio.EOF."""
    item = await call.read()
    assert isinstance(item, pb.WatchJobResponse), item
    return item
