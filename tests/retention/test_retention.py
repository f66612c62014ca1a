"""Retention against a real server whose retention loop runs every 50 ms.

- finished jobs lose their PROGRESS events after JOBSTATE_HISTORY_RETENTION, keep the rest;
- a WatchJob resume that reaches into compacted history starts with a SNAPSHOT;
- finished jobs stay listed unless JOBSTATE_JOB_RETENTION is set;
- a job that keeps reporting keeps only its last JOBSTATE_MAX_PROGRESS_EVENTS progress events.
Rounds are observed through the store's history (polling with a deadline), never by sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeAlias

import grpc
import pytest
from support.poll import eventually
from support.postgres import database_url
from support.servers import create_job, history, service, stub

from jobstate.domain import EventType
from jobstate.server import RunningServer
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

TICK = 0.05
WEEK = 7 * 86400.0

# A string: the async stub class exists only in the generated .pyi.
OpenClient: TypeAlias = "Callable[[RunningServer], pb_grpc.JobStateServiceAsyncStub]"


@pytest.fixture
async def channel_for() -> AsyncIterator[OpenClient]:
    channels: list[grpc.aio.Channel] = []

    def open_(server: RunningServer) -> pb_grpc.JobStateServiceAsyncStub:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        channels.append(channel)
        return stub(channel)

    yield open_
    for channel in channels:
        await channel.close()


async def event_types(server: RunningServer, job_id: str) -> list[tuple[int, str]]:
    _, events = await server.store.get_with_events(job_id, 0)
    return [(e.version, e.type.value) for e in events]


async def progress_count(server: RunningServer, job_id: str) -> int:
    return sum(t == EventType.PROGRESS.value for _, t in await event_types(server, job_id))


async def run_job(client: pb_grpc.JobStateServiceAsyncStub, job_id: str, steps: int) -> pb.Job:
    await create_job(client, job_id)
    await client.MarkSubmitted(pb.MarkSubmittedRequest(job_id=job_id, external_id="rp"), timeout=10)
    for step in range(1, steps + 1):
        await client.ReportProgress(
            pb.ReportProgressRequest(job_id=job_id, progress=step, message=f"step {step}"),
            timeout=10,
        )
    return (await client.GetJob(pb.GetJobRequest(job_id=job_id), timeout=10)).job


async def first_messages(
    client: pb_grpc.JobStateServiceAsyncStub, job_id: str, after: int, count: int
) -> list[tuple[int, int]]:
    """(type, version) of the first `count` messages of a WatchJob from `after`."""
    stream = client.WatchJob(pb.WatchJobRequest(job_id=job_id, after_version=after), timeout=10)
    got: list[tuple[int, int]] = []
    async for item in stream:
        got.append((item.type, item.job.version))
        if len(got) == count:
            stream.cancel()
            break
    return got


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_finished_jobs_lose_progress_events_and_keep_the_rest(
    tmp_path: Path, channel_for: OpenClient, backend: str
) -> None:
    async with (
        database_url(backend, tmp_path, "jobstate_retention") as url,
        service(tmp_path, database_url=url, history_retention=0, retention_interval=TICK) as server,
    ):
        client = channel_for(server)
        await run_job(client, "still-running", 3)  # versions 1..5
        await run_job(client, "done", 4)  # versions 1..6
        done = (
            await client.CompleteJob(
                pb.CompleteJobRequest(job_id="done", output_key="exports/done.mp4"), timeout=10
            )
        ).job
        assert done.version == 7

        async def compacted() -> bool:
            return await progress_count(server, "done") == 0

        await eventually(compacted, what="the finished job's progress events to be compacted")

        assert await event_types(server, "done") == [
            (1, "created"),
            (2, "submitted"),
            (7, "complete"),
        ]
        assert await progress_count(server, "still-running") == 3
        assert [v for v, _ in await event_types(server, "still-running")] == [1, 2, 3, 4, 5]

        # A resume from inside the compacted range: SNAPSHOT first, then the end (finished).
        resumed = await history(client, "done", 3, timeout=10)
        assert [(m.type, m.job.version) for m in resumed] == [(pb.EVENT_TYPE_SNAPSHOT, 7)]
        assert resumed[0].job.output_key == "exports/done.mp4"
        # A resume after the last progress still replays the kept terminal event.
        tail = await history(client, "done", 6, timeout=10)
        assert [(m.type, m.job.version) for m in tail] == [(pb.EVENT_TYPE_COMPLETE, 7)]
        # The unfinished job replays in full.
        assert await first_messages(client, "still-running", 1, 4) == [
            (pb.EVENT_TYPE_SUBMITTED, 2),
            (pb.EVENT_TYPE_PROGRESS, 3),
            (pb.EVENT_TYPE_PROGRESS, 4),
            (pb.EVENT_TYPE_PROGRESS, 5),
        ]
        # Finished jobs are still listed and readable (JOBSTATE_JOB_RETENTION unset).
        listed = await client.ListJobs(pb.ListJobsRequest(user_id="u1"), timeout=10)
        assert sorted(j.job_id for j in listed.jobs) == ["done", "still-running"]
        got = await client.GetJob(pb.GetJobRequest(job_id="done"), timeout=10)
        assert (got.job.status, got.job.progress, got.job.message) == (
            pb.JOB_STATUS_COMPLETE,
            100.0,
            "step 4",
        )


async def test_job_retention_removes_finished_jobs_only(
    tmp_path: Path, channel_for: OpenClient
) -> None:
    async with service(
        tmp_path, history_retention=WEEK, job_retention=0.001, retention_interval=TICK
    ) as server:
        client = channel_for(server)
        await run_job(client, "running", 2)
        await run_job(client, "failed", 1)
        await client.FailJob(pb.FailJobRequest(job_id="failed", error="boom"), timeout=10)

        async def removed() -> bool:
            listed = await client.ListJobs(pb.ListJobsRequest(user_id="u1"), timeout=10)
            return [j.job_id for j in listed.jobs] == ["running"]

        await eventually(removed, what="the finished job to be removed")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.GetJob(pb.GetJobRequest(job_id="failed"), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert await event_types(server, "failed") == []
        assert [v for v, _ in await event_types(server, "running")] == [1, 2, 3, 4]


async def test_a_chatty_job_keeps_only_its_latest_progress_events(
    tmp_path: Path, channel_for: OpenClient
) -> None:
    async with service(
        tmp_path, history_retention=WEEK, max_progress_events=10, retention_interval=TICK
    ) as server:
        client = channel_for(server)
        # Finished recently, few events: a week of retention keeps all of them.
        await run_job(client, "short", 3)
        await client.CompleteJob(
            pb.CompleteJobRequest(job_id="short", output_key="exports/s.mp4"), timeout=10
        )
        chatty = await run_job(client, "chatty", 40)  # versions 1..42
        assert chatty.version == 42

        async def bounded() -> bool:
            return await progress_count(server, "chatty") <= 10

        await eventually(bounded, what="the chatty job's history to be bounded")

        versions = [v for v, _ in await event_types(server, "chatty")]
        assert versions == [1, 2, *range(33, 43)]
        assert [v for v, _ in await event_types(server, "short")] == [1, 2, 3, 4, 5, 6]

        # Resuming into the trimmed part: SNAPSHOT first; from the kept part: exact replay.
        assert await first_messages(client, "chatty", 5, 1) == [(pb.EVENT_TYPE_SNAPSHOT, 42)]
        assert await first_messages(client, "chatty", 37, 5) == [
            (pb.EVENT_TYPE_PROGRESS, v) for v in range(38, 43)
        ]
        # It still lives: a live watcher sees the next report right after the replay.
        stream = client.WatchJob(pb.WatchJobRequest(job_id="chatty", after_version=41), timeout=10)
        seen: asyncio.Queue[int] = asyncio.Queue()

        async def pump() -> None:
            async for item in stream:
                await seen.put(item.job.version)

        pumping = asyncio.create_task(pump())
        try:
            assert await asyncio.wait_for(seen.get(), 10) == 42
            await client.ReportProgress(
                pb.ReportProgressRequest(job_id="chatty", progress=41), timeout=10
            )
            assert await asyncio.wait_for(seen.get(), 10) == 43
        finally:
            stream.cancel()
            await asyncio.gather(pumping, return_exceptions=True)
