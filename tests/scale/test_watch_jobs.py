"""WatchJobs across replicas on one PostgreSQL database: a user's jobs created and changed
through replica B reach a WatchJobs stream on replica A (the NOTIFY payload names the user),
and a lost LISTEN connection ends the stream cleanly so the client resumes missing nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import URL
from support.poll import eventually

from jobstate.client import InitialStateComplete, JobEvent, JobStateClient

from .conftest import WAIT, Cluster, Replica, relay_backends

pytestmark = pytest.mark.timeout(120)


class Feed:
    """A client's watch_jobs on one replica, read in a task into `items`."""

    def __init__(self, client: JobStateClient, user_id: str) -> None:
        self.items: list[JobEvent | InitialStateComplete] = []
        self._iterator = client.watch_jobs(user_id, max_backoff=0.5)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for item in self._iterator:
            self.items.append(item)

    def versions(self, job_id: str) -> list[int]:
        return [i.version for i in self.items if isinstance(i, JobEvent) and i.job_id == job_id]

    def markers(self) -> int:
        return sum(isinstance(i, InitialStateComplete) for i in self.items)

    async def has(self, job_id: str, version: int) -> None:
        async def arrived() -> bool:
            assert not self._task.done(), self._task
            return version in self.versions(job_id)

        await eventually(arrived, f"{job_id} v{version} on the feed", within=WAIT)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._iterator.aclose()


async def listening(admin: asyncpg.Connection, replica: Replica, database: URL) -> None:
    async def up() -> bool:
        return len(await relay_backends(admin, replica, database.port or 5432)) == 1

    await eventually(up, f"{replica.name}'s LISTEN connection")


@pytest.fixture
async def clients(cluster: Cluster) -> AsyncIterator[tuple[JobStateClient, JobStateClient]]:
    one, two = await cluster.start(2)
    async with (
        JobStateClient(one.target, timeout=30) as on_one,
        JobStateClient(two.target, timeout=30) as on_two,
    ):
        yield on_one, on_two


async def test_jobs_created_and_changed_on_another_replica_reach_the_feed(
    cluster: Cluster,
    clients: tuple[JobStateClient, JobStateClient],
    admin: asyncpg.Connection,
    database: URL,
) -> None:
    on_one, on_two = clients
    await listening(admin, cluster.replicas[0], database)
    await on_two.create_job("u1", job_id="before")
    feed = Feed(on_one, "u1")
    await feed.has("before", 1)
    await on_two.create_job("u1", job_id="after")  # CREATED, committed on replica two
    await on_two.create_job("u2", job_id="someone-else")
    for step in range(1, 6):
        await on_two.report_progress("after", step * 10)
        await on_one.report_progress("before", step * 10)  # writes through both replicas
    await on_two.complete_job("after", "exports/after.mp4")
    await feed.has("after", 7)
    await feed.has("before", 6)
    await feed.close()
    assert feed.versions("after") == list(range(1, 8))
    assert feed.versions("before") == list(range(1, 7))
    assert feed.versions("someone-else") == []


async def test_a_lost_listen_connection_ends_the_stream_and_the_client_misses_nothing(
    cluster: Cluster,
    clients: tuple[JobStateClient, JobStateClient],
    admin: asyncpg.Connection,
    database: URL,
) -> None:
    on_one, on_two = clients
    one = cluster.replicas[0]
    await listening(admin, one, database)
    await on_two.create_job("u1", job_id="relay")
    feed = Feed(on_one, "u1")
    await feed.has("relay", 1)
    markers = feed.markers()
    acked = 1
    # Cut replica one's LISTEN connection and write through replica two until a write is
    # acknowledged while replica one has no listener (its notification is lost for good).
    for attempt in range(5):
        for pid in await relay_backends(admin, one, database.port or 5432):
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        acked = (await on_two.report_progress("relay", 10.0 + attempt)).version
        if not await relay_backends(admin, one, database.port or 5432):
            break
    else:
        pytest.fail("replica one's LISTEN connection came back before any write could land")
    await listening(admin, one, database)
    await feed.has("relay", acked)
    last = (await on_two.complete_job("relay", "exports/relay.mp4")).version
    await feed.has("relay", last)
    await feed.close()
    assert feed.versions("relay") == list(range(1, last + 1))
    assert feed.markers() > markers  # the stream was re-opened after the relay reconnected
