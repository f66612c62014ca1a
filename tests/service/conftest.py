"""Fixtures for the service's tests: real servers on loopback, real databases, real channels.

- `backend`: "sqlite" (a temp file) or "postgres" (a database of its own, random name, dropped
  afterwards; skipped unless JOBSTATE_TEST_POSTGRES_URL is set).
- `server`: an in-process `jobstate.server.start_server` on 127.0.0.1:0 (its hub, locks and
  store are inspectable), `stub`: a grpc.aio stub over a real channel to it.
- `spawn`: a factory of `jobstate serve` subprocesses, for kill -9 and SIGTERM.
Nothing of ours is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import asyncpg
import grpc
import pytest
from sqlalchemy.engine import make_url
from support.processes import ServeProcess

from jobstate.config import ServiceConfig
from jobstate.server import RunningServer, start_server
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

POSTGRES_ENV = "JOBSTATE_TEST_POSTGRES_URL"
WAIT = 20.0  # generous deadline for "eventually"; never a synchronisation device
PROCESS_WAIT = 60.0  # a process start or exit on a loaded 2-core machine
JOBSTATE = Path(sys.executable).with_name("jobstate")


# --- databases ----------------------------------------------------------------------------


def admin_dsn() -> str:
    return make_url(os.environ[POSTGRES_ENV]).set(drivername="postgresql").render_as_string(False)


async def drop_database(url: str) -> None:
    """Drop a database made by `postgres_database` now (e.g. to make the store unreachable)."""
    admin = await asyncpg.connect(admin_dsn())
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database (random name) as an async SQLAlchemy URL; dropped after."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set; PostgreSQL tests need a server to run against")
    url = make_url(base)
    name = f"jobstate_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    database = url.set(database=name).render_as_string(hide_password=False)
    try:
        yield database
    finally:
        await drop_database(database)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return cast(str, request.param)


@pytest.fixture
async def database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'jobstate.db'}"
        return
    async with postgres_database() as url:
        yield url


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A PostgreSQL database of the test's own (request it before `start`)."""
    async with postgres_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'jobstate.db'}"


# --- in-process servers ---------------------------------------------------------------------


def service_config(database_url: str, **overrides: Any) -> ServiceConfig:
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "database_url": database_url,
        "environment": "development",
    }
    values.update(overrides)
    return ServiceConfig(**values)


ServerFactory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def start() -> AsyncIterator[ServerFactory]:
    """Start in-process servers (`await start(url, **config)`); all are stopped afterwards."""
    started: list[RunningServer] = []

    async def _start(database_url: str, **overrides: Any) -> RunningServer:
        running = await start_server(service_config(database_url, **overrides))
        started.append(running)
        return running

    yield _start
    for running in reversed(started):
        await running.stop(grace=5)


# NOTE: the database fixture comes first so that it is torn down last, after the servers.
@pytest.fixture
async def server(database_url: str, start: ServerFactory) -> RunningServer:
    """One server on the parametrised backend (sqlite and postgres)."""
    return await start(database_url)


@pytest.fixture
async def sqlite_server(sqlite_url: str, start: ServerFactory) -> RunningServer:
    """One server on SQLite only, for behaviour that does not depend on the store."""
    return await start(sqlite_url)


ChannelFactory = Callable[..., grpc.aio.Channel]


@pytest.fixture
async def connect() -> AsyncIterator[ChannelFactory]:
    """Open grpc.aio channels (`connect(port, options=...)`); all are closed afterwards."""
    channels: list[grpc.aio.Channel] = []

    def _connect(port: int, options: list[tuple[str, Any]] | None = None) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options or [])
        channels.append(channel)
        return channel

    yield _connect
    for channel in channels:
        await channel.close(grace=None)


@pytest.fixture
def stub(server: RunningServer, connect: ChannelFactory) -> pb_grpc.JobStateServiceAsyncStub:
    return pb_grpc.JobStateServiceStub(connect(server.port))


@pytest.fixture
def sqlite_stub(
    sqlite_server: RunningServer, connect: ChannelFactory
) -> pb_grpc.JobStateServiceAsyncStub:
    return pb_grpc.JobStateServiceStub(connect(sqlite_server.port))


# --- helpers ------------------------------------------------------------------------------


async def create_job(
    stub: pb_grpc.JobStateServiceAsyncStub, job_id: str = "", **fields: Any
) -> pb.Job:
    fields.setdefault("user_id", "u1")
    fields.setdefault("kind", "overlay")
    response = await stub.CreateJob(pb.CreateJobRequest(job_id=job_id, **fields))
    return response.job


class Watch:
    """A WatchJob stream piped into a queue of (type, version, job) tuples, closed by None."""

    def __init__(self, stub: pb_grpc.JobStateServiceAsyncStub, job_id: str, after: int = 0) -> None:
        self.call = stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_version=after))
        self.queue: asyncio.Queue[pb.WatchJobResponse | None] = asyncio.Queue()
        self._early: list[pb.WatchJobResponse | None] = []
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            async for message in self.call:
                self.queue.put_nowait(message)
        except grpc.aio.AioRpcError:
            pass  # the status is read from the call
        except asyncio.CancelledError:
            if not self.call.cancelled():  # grpc raises this when we cancelled the call
                raise
        finally:
            self.queue.put_nowait(None)

    async def next(self) -> pb.WatchJobResponse | None:
        if self._early:
            return self._early.pop(0)
        return await asyncio.wait_for(self.queue.get(), WAIT)

    async def until(self, version: int) -> list[pb.WatchJobResponse]:
        """Messages up to and including `version` (or to the end of the stream)."""
        got: list[pb.WatchJobResponse] = []
        while (message := await self.next()) is not None:
            got.append(message)
            if message.job.version >= version:
                break
        return got

    async def rest(self) -> list[pb.WatchJobResponse]:
        """Every message until the stream ends."""
        got: list[pb.WatchJobResponse] = []
        while (message := await self.next()) is not None:
            got.append(message)
        return got

    async def nothing_more(self, within: float = 0.2) -> bool:
        """True if no message arrives (and the stream stays open) within a short wait.

        A message that does arrive is kept: `next()` returns it.
        """
        getter = asyncio.ensure_future(self.queue.get())
        await asyncio.wait({getter}, timeout=within)
        if not getter.done():
            getter.cancel()
            await asyncio.gather(getter, return_exceptions=True)
        if getter.cancelled():
            return True
        self._early.append(getter.result())
        return False

    async def code(self) -> grpc.StatusCode:
        await asyncio.wait_for(self.task, WAIT)
        return await self.call.code()

    async def cancel(self) -> None:
        self.call.cancel()
        await asyncio.wait_for(self.task, WAIT)


def log_of(messages: list[pb.WatchJobResponse]) -> list[tuple[str, int]]:
    """(event type name, version) for each message: what a watcher saw, in order."""
    return [
        (pb.EventType.Name(m.type).removeprefix("EVENT_TYPE_"), m.job.version) for m in messages
    ]


# --- `jobstate serve` subprocesses ----------------------------------------------------------

SpawnFactory = Callable[..., Awaitable[ServeProcess]]


@pytest.fixture
async def spawn() -> AsyncIterator[SpawnFactory]:
    """Start `jobstate serve` subprocesses (`await spawn(*args, env=..., listening=True)`): the
    arguments are the test's own (--listen included); `program` is the `jobstate` command to
    run (another release's, say). The environment is `support.processes.child_env(env)`.

    With listening=True it waits for the "listening" log line and reads the port from it.
    Every process still running afterwards is killed and reaped.
    """
    procs: list[ServeProcess] = []

    async def _spawn(
        *args: str,
        env: dict[str, str | None] | None = None,
        listening: bool = True,
        program: tuple[str, ...] = (str(JOBSTATE),),
    ) -> ServeProcess:
        serve = ServeProcess(args=args, env=env or {}, listen=False, program=program)
        procs.append(serve)
        serve.launch()
        if listening:
            await serve.wait_listening(PROCESS_WAIT)
        return serve

    yield _spawn
    for serve in procs:
        await serve.kill()


async def history(stub: pb_grpc.JobStateServiceAsyncStub, job_id: str) -> list[tuple[str, int]]:
    """The job's whole history after CREATED, as (event type, version), read by WatchJob."""
    job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
    if job.version == 1:
        return []
    watch = Watch(stub, job_id, after=1)
    try:
        return log_of(await watch.until(job.version))
    finally:
        await watch.cancel()


async def rpc_error(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    """The status code and details of a call that must fail."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code(), info.value.details() or ""
