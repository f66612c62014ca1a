"""Batched changes and the job feed of `jobstate.client`, against real servers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from support.processes import ServeProcess
from support.servers import sqlite_url

from jobstate.client import (
    EventType,
    FailedPrecondition,
    InvalidArgument,
    JobStateClient,
    NotFound,
    Status,
)
from jobstate.client.feed import Ended, FeedItem, JobFeed
from jobstate.domain import Cancel, Progress
from jobstate.server import RunningServer

WAIT = 30.0


def calls_of(log: list[str]) -> Callable[[str, str, float], None]:
    return lambda method, outcome, seconds: log.append(method)


async def test_concurrent_changes_share_calls_and_keep_every_rule(
    server: RunningServer,
) -> None:
    calls: list[str] = []
    target = f"127.0.0.1:{server.port}"
    async with JobStateClient(
        target, timeout=10, batch_changes=True, observer=calls_of(calls)
    ) as c:
        for i in range(40):
            await c.create_job("u1", "overlay", {"big": "x" * 100}, job_id=f"j{i}")
        await c.cancel_job("j0")
        calls.clear()
        results = await asyncio.gather(
            *(c.report_progress(f"j{i}", 50, "half") for i in range(40)),
            c.report_progress("missing", 1),
            c.report_progress("j1", 101),
            return_exceptions=True,
        )
        done = await c.complete_job("j2", "exports/j2/out.mp4")
    assert isinstance(results[0], FailedPrecondition)  # j0 was cancelled
    jobs = results[1:40]
    assert all(not isinstance(j, BaseException) for j in jobs)
    # Batched results leave params out (they never change after creation).
    assert {(j.status, j.version, j.progress, len(j.params)) for j in jobs} == {  # type: ignore[union-attr]
        (Status.PROCESSING, 2, 50.0, 0)
    }
    assert (type(results[40]), type(results[41])) == (NotFound, InvalidArgument)
    assert (done.status, done.version) == (Status.COMPLETE, 3)
    assert set(calls) == {"ApplyChanges"}
    assert len(calls) < 42 / 4, calls  # 43 changes in a handful of calls


async def test_one_jobs_changes_keep_their_order(server: RunningServer) -> None:
    async with JobStateClient(f"127.0.0.1:{server.port}", batch_changes=True) as client:
        await client.create_job("u1", job_id="o")
        versions = await asyncio.gather(
            *(client.report_progress("o", value) for value in range(1, 21))
        )
    assert [job.progress for job in versions] == [float(v) for v in range(1, 21)]
    assert [job.version for job in versions] == list(range(2, 22))


async def test_apply_changes_answers_each_change(server: RunningServer) -> None:
    async with JobStateClient(f"127.0.0.1:{server.port}") as client:
        await client.create_job("u1", job_id="a")
        outcomes = await client.apply_changes(
            [("a", Progress(10)), ("nope", Progress(10)), ("a", Cancel("x"))]
        )
    assert [type(o).__name__ for o in outcomes] == ["Job", "NotFound", "Job"]
    assert outcomes[2].status is Status.CANCELLED  # type: ignore[union-attr]


class Collector:
    """Reads a feed in a task; `items` holds everything yielded, in order."""

    def __init__(self, feed: JobFeed) -> None:
        self.feed = feed
        self.items: list[FeedItem] = []
        self.batches = 0
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for batch in self.feed:
            self.batches += 1
            self.items.extend(batch)

    def log(self, job_id: str) -> list[tuple[str, int] | str]:
        out: list[tuple[str, int] | str] = []
        for item in self.items:
            if isinstance(item, Ended):
                if item.job_id == job_id:
                    out.append(f"ended:{type(item.error).__name__ if item.error else 'ok'}")
            elif item.job_id == job_id:
                out.append((item.type.value, item.version))
        return out

    async def until(self, check: Callable[[], bool]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while not check():
            assert not self.task.done(), self.task
            assert loop.time() < deadline, self.items
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.feed.close()
        await asyncio.wait_for(self.task, WAIT)


async def test_a_feed_follows_many_jobs_and_ends_each(server: RunningServer) -> None:
    async with JobStateClient(f"127.0.0.1:{server.port}") as client:
        for job_id in ("a", "b"):
            await client.create_job("u1", job_id=job_id)
        feed = client.feed(params=False)
        feed.follow("a")
        feed.follow("b")
        feed.follow("missing")
        seen = Collector(feed)
        await seen.until(lambda: len(seen.items) >= 3)
        await client.report_progress("a", 10)
        await client.complete_job("a", "exports/a/o.mp4")
        await client.report_progress("b", 20)
        await seen.until(lambda: ("progress", 2) in seen.log("b"))
        feed.unfollow("b")
        await client.report_progress("b", 30)
        await seen.until(lambda: "ended:ok" in seen.log("a"))
        await seen.stop()
    assert seen.log("a") == [("snapshot", 1), ("progress", 2), ("complete", 3), "ended:ok"]
    assert seen.log("b") == [("snapshot", 1), ("progress", 2)]
    assert seen.log("missing") == ["ended:NotFound"]
    assert len(feed) == 0


async def test_a_feed_resumes_across_restarts_without_repeats(tmp_path: Path) -> None:
    proc = ServeProcess(database_url=sqlite_url(tmp_path))
    await proc.start()
    try:
        async with JobStateClient(proc.target, timeout=10) as client:
            for job_id in ("r", "s"):
                await client.create_job("u1", job_id=job_id)
            feed = client.feed(params=False, max_backoff=0.5)
            feed.follow("r")
            feed.follow("s")
            seen = Collector(feed)
            await seen.until(lambda: len(seen.items) == 2)
            await client.report_progress("r", 10)
            await seen.until(lambda: ("progress", 2) in seen.log("r"))
            await proc.kill()
            await proc.start()
            await client.report_progress("r", 20)
            await client.report_progress("s", 20)
            await seen.until(lambda: ("progress", 2) in seen.log("s"))
            await proc.stop()
            await proc.start()
            await client.cancel_job("r")
            await client.report_progress("s", 30)
            await seen.until(lambda: "ended:ok" in seen.log("r") and len(seen.log("s")) == 3)
            await seen.stop()
    finally:
        await proc.kill()
    assert seen.log("r") == [
        ("snapshot", 1),
        ("progress", 2),
        ("progress", 3),
        ("cancelled", 4),
        "ended:ok",
    ]
    assert seen.log("s") == [("snapshot", 1), ("progress", 2), ("progress", 3)]
    kinds = {item.type for item in seen.items if not isinstance(item, Ended)}
    assert EventType.SNAPSHOT in kinds
