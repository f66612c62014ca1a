"""`jobstate.client` against a real service on loopback: records out, typed errors, paging,
and a watch that resumes by itself across a restart of `jobstate serve`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.poll import eventually
from support.processes import ServeProcess
from support.servers import service, sqlite_url

from jobstate.client import (
    AlreadyExists,
    EventType,
    FailedPrecondition,
    InvalidArgument,
    Job,
    JobEvent,
    JobStateClient,
    NotFound,
    Status,
    Unauthenticated,
)

WAIT = 30.0


async def test_create_returns_a_plain_record(client: JobStateClient) -> None:
    job = await client.create_job("u1", "overlay", {"source": "a.mp4", "n": [1, 2]}, job_id="j1")
    assert isinstance(job, Job)
    assert (job.job_id, job.user_id, job.kind, job.status, job.version, job.params) == (
        "j1",
        "u1",
        "overlay",
        Status.PENDING,
        1,
        {"source": "a.mp4", "n": [1, 2]},
    )
    assert job.created_at.tzinfo is UTC and job.completed_at is None
    assert await client.get_job("j1") == job


async def test_changes_walk_the_state_machine(client: JobStateClient) -> None:
    await client.create_job("u1", "overlay", job_id="j")
    submitted = await client.mark_submitted("j", "rp-1")
    progressed = await client.report_progress("j", 40, "rendering")
    done = await client.complete_job("j", "exports/j/out.mp4")
    assert [(j.status, j.version) for j in (submitted, progressed, done)] == [
        (Status.PROCESSING, 2),
        (Status.PROCESSING, 3),
        (Status.COMPLETE, 4),
    ]
    assert (done.progress, done.output_key, isinstance(done.completed_at, datetime)) == (
        100.0,
        "exports/j/out.mp4",
        True,
    )
    again = await client.complete_job("j", "exports/j/out.mp4")
    assert again.version == 4  # a restatement makes no new version


async def test_errors_are_typed_and_carry_the_servers_message(client: JobStateClient) -> None:
    await client.create_job("u1", job_id="taken")
    await client.cancel_job("taken", "no longer wanted")
    with pytest.raises(NotFound, match="nope"):
        await client.get_job("nope")
    with pytest.raises(InvalidArgument, match="job_id"):
        await client.get_job("not valid!")
    with pytest.raises(AlreadyExists):
        await client.create_job("u2", job_id="taken")
    with pytest.raises(FailedPrecondition, match="cancelled"):
        await client.report_progress("taken", 10)
    await client.create_job("u1", job_id="p")
    with pytest.raises(InvalidArgument, match="progress"):
        await client.report_progress("p", 101)


async def test_params_protobuf_cannot_carry_fail_before_sending(client: JobStateClient) -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(150):
        node["x"] = {}
        node = node["x"]  # type: ignore[assignment]
    with pytest.raises(InvalidArgument, match="params"):
        await client.create_job("u1", params=deep, job_id="deep")
    with pytest.raises(NotFound):
        await client.get_job("deep")


async def test_a_number_beyond_a_double_fails_before_sending(client: JobStateClient) -> None:
    with pytest.raises(InvalidArgument, match="params hold a number too large for a double"):
        await client.create_job("u1", params={"frames": 10**400}, job_id="big")
    with pytest.raises(NotFound):
        await client.get_job("big")


async def test_list_jobs_iterates_every_page_newest_first(client: JobStateClient) -> None:
    for i in range(7):
        await client.create_job("u1", job_id=f"j{i}")
    await client.create_job("u2", job_id="other")
    await client.cancel_job("j3")
    seen = [job.job_id async for job in client.list_jobs("u1", page_size=2)]
    assert seen == [f"j{i}" for i in reversed(range(7))]
    cancelled = [j.job_id async for j in client.list_jobs("u1", statuses=[Status.CANCELLED])]
    assert cancelled == ["j3"]
    page = await client.list_page("u1", page_size=3)
    assert ([j.job_id for j in page.jobs], bool(page.next_page_token)) == (["j6", "j5", "j4"], True)


async def test_idempotency_key_lookup(client: JobStateClient) -> None:
    first = await client.create_job("u1", idempotency_key="k1")
    again = await client.create_job("u1", idempotency_key="k1")
    found = [job.job_id async for job in client.list_jobs("u1", idempotency_key="k1")]
    assert (again.job_id, found) == (first.job_id, [first.job_id])


async def test_watch_yields_snapshot_then_events_and_ends(client: JobStateClient) -> None:
    await client.create_job("u1", job_id="w")
    events: list[JobEvent] = []

    async def follow() -> None:
        async for event in client.watch("w"):
            events.append(event)

    follower = asyncio.create_task(follow())
    await eventually(lambda: len(events) >= 1, "event 1 to reach the follower")
    await client.report_progress("w", 10)
    await client.report_progress("w", 20)
    await client.fail_job("w", "boom")
    await asyncio.wait_for(follower, WAIT)
    assert [(e.type, e.version, e.job.status) for e in events] == [
        (EventType.SNAPSHOT, 1, Status.PENDING),
        (EventType.PROGRESS, 2, Status.PROCESSING),
        (EventType.PROGRESS, 3, Status.PROCESSING),
        (EventType.ERROR, 4, Status.ERROR),
    ]


async def test_watch_of_a_job_finished_at_after_version_ends_at_once(
    client: JobStateClient,
) -> None:
    await client.create_job("u1", job_id="f")
    done = await client.cancel_job("f")
    assert [e async for e in client.watch("f", after_version=done.version)] == []


async def test_watch_of_a_missing_job_raises_not_found(client: JobStateClient) -> None:
    with pytest.raises(NotFound):
        async for _ in client.watch("missing"):
            pass


async def test_watch_resumes_across_a_restart_without_repeats(tmp_path: Path) -> None:
    """kill -9 and a clean SIGTERM of `jobstate serve` while a watch is open: the watch
    re-opens by itself from the last version and yields every version exactly once."""
    proc = ServeProcess(database_url=sqlite_url(tmp_path))
    await proc.start()
    events: list[JobEvent] = []
    try:
        async with JobStateClient(proc.target, timeout=10) as client:
            await client.create_job("u1", job_id="r")

            async def follow() -> None:
                async for event in client.watch("r", max_backoff=0.5):
                    events.append(event)

            follower = asyncio.create_task(follow())
            await eventually(lambda: len(events) >= 1, "event 1 to reach the follower")
            await client.report_progress("r", 10)
            await eventually(lambda: len(events) >= 2, "event 2 to reach the follower")
            await proc.kill()
            await proc.start()
            await client.report_progress("r", 20)
            await eventually(lambda: len(events) >= 3, "event 3 to reach the follower")
            await proc.stop()
            await proc.start()
            await client.report_progress("r", 30)
            await client.complete_job("r", "exports/r/out.mp4")
            await asyncio.wait_for(follower, WAIT)
    finally:
        await proc.kill()
    assert [e.version for e in events] == [1, 2, 3, 4, 5]
    assert [e.type for e in events][-1] is EventType.COMPLETE


async def test_wrong_token_is_unauthenticated(tmp_path: Path) -> None:
    async with (
        service(tmp_path, api_token="t" * 40) as running,
        JobStateClient(f"127.0.0.1:{running.port}", api_token="wrong" * 8) as client,
    ):
        with pytest.raises(Unauthenticated):
            await client.get_job("x")
        assert await client.healthy()  # health itself is open
