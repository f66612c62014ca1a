"""`JobStateClient.watch_jobs` against real servers: every job of a user, resumed by itself
across restarts of `jobstate serve` without a repeat or a gap."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

import pytest
from support.processes import ServeProcess
from support.servers import service, sqlite_url

from jobstate.client import (
    EventType,
    InitialStateComplete,
    InvalidArgument,
    JobEvent,
    JobStateClient,
    Status,
    Unauthenticated,
    UserFeedItem,
)

WAIT = 30.0


class Reader:
    """Reads a watch_jobs iterator in a task; `log` holds ("event", job, type, version) and
    ("initial", truncated, unknown ids) in the order they were yielded."""

    def __init__(self, items: AsyncGenerator[UserFeedItem, None]) -> None:
        self.items = items
        self.log: list[tuple[object, ...]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for item in self.items:
            if isinstance(item, InitialStateComplete):
                self.log.append(("initial", item.truncated, item.unknown_job_ids))
            else:
                assert isinstance(item, JobEvent)
                self.log.append(("event", item.job_id, item.type.name, item.version))

    async def until(self, check: Callable[[list[tuple[object, ...]]], bool]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while not check(self.log):
            assert not self.task.done() or self.task.result() is None, self.log
            assert loop.time() < deadline, f"timed out: {self.log}"
            await asyncio.sleep(0.02)

    def events(self, job_id: str) -> list[tuple[str, int]]:
        return [(str(e[2]), int(str(e[3]))) for e in self.log if e[:2] == ("event", job_id)]

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.items.aclose()


async def test_initial_state_marker_and_live_events(client: JobStateClient) -> None:
    await client.create_job("u1", job_id="old")
    await client.create_job("u1", job_id="gone")
    await client.cancel_job("gone")
    reader = Reader(client.watch_jobs("u1", after_versions={"gone": 1, "x": 1}))
    await reader.until(lambda log: any(e[0] == "initial" for e in log))
    assert reader.log == [
        ("event", "old", "SNAPSHOT", 1),
        ("event", "gone", "CANCELLED", 2),
        ("initial", False, ("x",)),
    ]
    await client.create_job("u1", job_id="new")
    await client.report_progress("old", 50)
    await reader.until(lambda log: ("event", "old", "PROGRESS", 2) in log)
    assert reader.log[3:] == [("event", "new", "CREATED", 1), ("event", "old", "PROGRESS", 2)]
    await reader.close()


async def test_status_filter_and_read_mask(client: JobStateClient) -> None:
    await client.create_job("u1", "overlay", {"big": "x" * 100}, job_id="p")
    items = client.watch_jobs("u1", statuses=[Status.PROCESSING], read_mask=["progress"])
    reader = Reader(items)
    await reader.until(lambda log: ("initial", False, ()) in log)
    await client.report_progress("p", 10)
    await reader.until(lambda log: ("event", "p", "PROGRESS", 2) in log)
    assert reader.log == [("initial", False, ()), ("event", "p", "PROGRESS", 2)]
    await reader.close()


async def test_bad_arguments_raise_typed_errors(client: JobStateClient) -> None:
    with pytest.raises(InvalidArgument, match="user_id is required"):
        async for _ in client.watch_jobs(""):
            pass
    with pytest.raises(InvalidArgument, match="read_mask"):
        async for _ in client.watch_jobs("u1", read_mask=["nope"]):
            pass


async def test_a_wrong_token_is_unauthenticated(tmp_path: Path) -> None:
    async with (
        service(tmp_path, api_token="t" * 40) as running,
        JobStateClient(f"127.0.0.1:{running.port}", api_token="wrong" * 8) as client,
    ):
        with pytest.raises(Unauthenticated):
            async for _ in client.watch_jobs("u1"):
                pass


async def test_resumes_across_restarts_missing_nothing_and_repeating_nothing(
    tmp_path: Path,
) -> None:
    """kill -9 and a clean SIGTERM of `jobstate serve` while a watch is open: each re-opened
    stream starts from the last versions yielded; every version of every job arrives once."""
    proc = ServeProcess(database_url=sqlite_url(tmp_path))
    await proc.start()
    try:
        async with JobStateClient(proc.target, timeout=10) as client:
            await client.create_job("u1", job_id="a")
            reader = Reader(client.watch_jobs("u1", max_backoff=0.5))
            await reader.until(lambda log: len(log) == 2)  # a's SNAPSHOT, the marker
            await client.report_progress("a", 10)
            await reader.until(lambda log: ("event", "a", "PROGRESS", 2) in log)

            await proc.kill()
            await proc.start()
            await client.report_progress("a", 20)  # while the client may still be away
            await client.create_job("u1", job_id="b")
            await reader.until(lambda log: ("event", "a", "PROGRESS", 3) in log)
            await client.report_progress("b", 5)
            await reader.until(lambda log: ("event", "b", "PROGRESS", 2) in log)

            await proc.stop()
            await proc.start()
            await client.report_progress("a", 30)
            await client.complete_job("a", "exports/a.mp4")
            await client.report_progress("b", 6)
            await reader.until(lambda log: ("event", "b", "PROGRESS", 3) in log)
            await reader.until(lambda log: ("event", "a", "COMPLETE", 5) in log)
            await reader.close()
    finally:
        await proc.kill()
    # Every stream opened ended its initial state with a marker; the first and the two resumes.
    assert [e for e in reader.log if e[0] == "initial"] == [("initial", False, ())] * 3
    assert reader.events("a") == [
        ("SNAPSHOT", 1),
        ("PROGRESS", 2),
        ("PROGRESS", 3),
        ("PROGRESS", 4),
        ("COMPLETE", 5),
    ]
    # b was created while the watch was away: it arrives in the resumed stream's initial state.
    b = reader.events("b")
    assert [version for _, version in b] == list(range(b[0][1], 4))
    assert b[0][0] in {EventType.CREATED.name, EventType.SNAPSHOT.name}
