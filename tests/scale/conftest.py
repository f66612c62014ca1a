"""Scale-out fixtures: several `jobstate serve` processes on one PostgreSQL database.

Every test gets a database of its own (created, then dropped WITH (FORCE)), replicas are real
subprocesses on free loopback ports, and watch streams are pumped into lists so a test can
wait for "version N arrived" with a deadline instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import grpc
import pytest
from sqlalchemy.engine import URL
from support.postgres import scratch_database
from support.processes import ServeProcess

from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

WAIT = 30.0
LISTEN_QUERY = 'LISTEN "jobstate_events"'
# NOTE: the relay checks its LISTEN connection with `SELECT 1` every few seconds, after which
# pg_stat_activity shows that as the backend's last query; the pool's pre-ping is `;`.
RELAY_QUERIES = (LISTEN_QUERY, "SELECT 1")


def dsn(url: URL) -> str:
    """An asyncpg DSN for a SQLAlchemy URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class Replica:
    """One `jobstate serve` process with a channel and stub of its own."""

    name: str
    process: ServeProcess
    channel: grpc.aio.Channel | None = None

    @property
    def target(self) -> str:
        return self.process.target

    @property
    def stub(self) -> pb_grpc.JobStateServiceAsyncStub:
        assert self.channel is not None
        return pb_grpc.JobStateServiceStub(self.channel)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def kill(self) -> None:
        """SIGKILL, as `kill -9` does: no drain, no goodbye to clients or the database."""
        await self.process.kill()

    async def restart(self) -> None:
        """Start again on the same port (clients' targets name it), wait until SERVING."""
        await self.process.start()

    async def close(self) -> None:
        # NOTE: SIGKILL, not a drain: graceful shutdown is tested elsewhere, and a drain per
        # replica per test costs seconds on a busy machine. The database is dropped WITH (FORCE).
        if self.channel is not None:
            await self.channel.close()
        await self.process.kill()


@dataclass
class Cluster:
    """Replicas sharing one database; `database` is its SQLAlchemy URL."""

    database: URL
    logs: Path
    replicas: list[Replica] = field(default_factory=list)

    async def start(self, count: int, **env: str) -> list[Replica]:
        """Start `count` replicas together (they race on schema creation on purpose)."""
        url = self.database.render_as_string(hide_password=False)
        started = [
            Replica(
                f"replica{len(self.replicas) + i + 1}",
                ServeProcess(database_url=url, env=env),
            )
            for i in range(count)
        ]
        for replica in started:
            replica.process.log_path = self.logs / f"{replica.name}.log"
        self.replicas.extend(started)
        await asyncio.gather(*(r.process.start() for r in started))
        for replica in started:
            replica.channel = grpc.aio.insecure_channel(replica.target)
        return started

    async def start_at(self, *addresses: tuple[str, int], **env: str) -> list[Replica]:
        """Start one replica per (loopback host, port): several may share a port on different
        hosts (127.0.0.1, 127.0.0.2, ...), as replicas behind one DNS name do."""
        url = self.database.render_as_string(hide_password=False)
        started = []
        for host, port in addresses:
            name = f"replica{len(self.replicas) + 1}"
            process = ServeProcess(database_url=url, env=env, host=host, port=port)
            process.log_path = self.logs / f"{name}.log"
            replica = Replica(name, process)
            self.replicas.append(replica)
            started.append(replica)
        await asyncio.gather(*(r.restart() for r in started))
        for replica in started:
            replica.channel = grpc.aio.insecure_channel(replica.target)
        return started

    def log(self, replica: Replica) -> str:
        path = self.logs / f"{replica.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def close(self) -> None:
        await asyncio.gather(*(r.close() for r in self.replicas), return_exceptions=True)


@pytest.fixture
async def database() -> AsyncIterator[URL]:
    async with scratch_database("jobstate_scale") as url:
        yield url


@pytest.fixture
async def cluster(database: URL, tmp_path: Path) -> AsyncIterator[Cluster]:
    cluster = Cluster(database, tmp_path)
    try:
        yield cluster
    finally:
        await cluster.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def admin(database: URL) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to the test's database, for looking behind the service."""
    conn = await asyncpg.connect(dsn(database))
    try:
        yield conn
    finally:
        await conn.close()


class Stream:
    """A WatchJob call whose responses are pumped into a list; `ended` holds the final code."""

    def __init__(self, stub: pb_grpc.JobStateServiceAsyncStub, job_id: str, after: int = 0) -> None:
        self.call = stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_version=after))
        self.items: list[pb.WatchJobResponse] = []
        self._changed = asyncio.Event()
        self.ended: asyncio.Future[grpc.StatusCode] = asyncio.get_running_loop().create_future()
        self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        code = grpc.StatusCode.OK
        try:
            async for item in self.call:
                self.items.append(item)
                self._changed.set()
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
        self.ended.set_result(code)
        self._changed.set()

    @property
    def versions(self) -> list[int]:
        return [item.job.version for item in self.items]

    async def until_version(self, version: int, within: float = WAIT) -> list[pb.WatchJobResponse]:
        """Wait until an item with version >= `version` arrived (or the stream ended)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not (self.items and self.items[-1].job.version >= version) and not self.ended.done():
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"watch got versions {self.versions}, not {version}, within {within} s"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return list(self.items)

    async def end(self, within: float = WAIT) -> grpc.StatusCode:
        return await asyncio.wait_for(asyncio.shield(self.ended), within)

    async def close(self) -> None:
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
async def watch() -> AsyncIterator[Callable[..., Awaitable[Stream]]]:
    streams: list[Stream] = []

    async def open_stream(
        stub: pb_grpc.JobStateServiceAsyncStub,
        job_id: str,
        after: int = 0,
        first: int | None = None,
    ) -> Stream:
        """Open a stream; with `first`, wait until that version arrived (the stream is live)."""
        stream = Stream(stub, job_id, after)
        streams.append(stream)
        if first is not None:
            await stream.until_version(first)
        return stream

    yield open_stream
    for stream in streams:
        await stream.close()


def tcp_client_ports(pid: int, remote_port: int) -> set[int]:
    """Local ports of `pid`'s TCP connections to `remote_port` (from /proc, Linux only)."""
    inodes = _socket_inodes(pid)
    ports = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def tcp_peers(pid: int) -> set[tuple[str, int]]:
    """(IPv4 address, port) of every established TCP connection of `pid` (from /proc; gRPC's
    sockets are IPv6 ones with v4-mapped addresses, so both tables are read)."""
    inodes = _socket_inodes(pid)
    peers = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if inode not in inodes or state != "01":  # 01: ESTABLISHED
                continue
            address, port = remote.split(":")
            if len(address) == 32 and not address.startswith("0000000000000000FFFF0000"):
                continue  # a real IPv6 peer
            dotted = ".".join(str(b) for b in reversed(bytes.fromhex(address[-8:])))
            peers.add((dotted, int(port, 16)))
    return peers


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


async def relay_backends(admin: asyncpg.Connection, replica: Replica, db_port: int) -> list[int]:
    """PostgreSQL backend pids of `replica`'s LISTEN connection (normally exactly one)."""
    ports = tcp_client_ports(replica.pid, db_port)
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND query = ANY($1::text[])"
        " AND client_port = ANY($2::int[])",
        list(RELAY_QUERIES),
        sorted(ports),
    )
    return [row["pid"] for row in rows]
