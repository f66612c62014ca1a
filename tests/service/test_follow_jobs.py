"""FollowJobs: many jobs on one stream, with WatchJob's rules per job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TypeAlias, cast

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from jobstate.server import RunningServer
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

from .conftest import WAIT, create_job

Stub: TypeAlias = "pb_grpc.JobStateServiceAsyncStub"
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def follow(job_id: str, after: int = 0, paths: tuple[str, ...] = ()) -> pb.FollowJobsRequest:
    mask = FieldMask(paths=list(paths))
    request = pb.FollowJob(job_id=job_id, after_version=after, read_mask=mask)
    return pb.FollowJobsRequest(follow=request)


def unfollow(job_id: str) -> pb.FollowJobsRequest:
    return pb.FollowJobsRequest(unfollow=pb.UnfollowJob(job_id=job_id))


@dataclass
class Stream:
    """One FollowJobs call: requests go in through `send`, everything received is logged as
    ("event", job_id, type, version) and ("end", job_id, code name) in arrival order."""

    stub: Stub
    log: list[tuple[object, ...]] = field(default_factory=list)
    messages: list[pb.FollowJobsResponse] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._requests: asyncio.Queue[pb.FollowJobsRequest | None] = asyncio.Queue()
        self.call = self.stub.FollowJobs(self._outgoing())
        self._reader = asyncio.create_task(self._read())

    async def _outgoing(self) -> AsyncIterator[pb.FollowJobsRequest]:
        while (request := await self._requests.get()) is not None:
            yield request

    async def _read(self) -> None:
        async for message in self.call:
            self.messages.append(message)
            for event in message.events:
                kind = pb.EventType.Name(event.type).removeprefix("EVENT_TYPE_")
                self.log.append(("event", event.job.job_id, kind, event.job.version))
            for end in message.ends:
                self.log.append(("end", end.job_id, CODE_NAMES[end.code]))

    def send(self, request: pb.FollowJobsRequest) -> None:
        self._requests.put_nowait(request)

    def done_sending(self) -> None:
        self._requests.put_nowait(None)

    async def until(self, entry: tuple[object, ...]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while entry not in self.log:
            assert not self._reader.done() or entry in self.log, (entry, self.log)
            assert loop.time() < deadline, f"timed out waiting for {entry}: {self.log}"
            await asyncio.sleep(0.01)

    async def finished(self) -> grpc.StatusCode:
        await asyncio.wait_for(self._reader, WAIT)
        return await self.call.code()

    def cancel(self) -> None:
        self.call.cancel()


@pytest.fixture
async def streams(stub: Stub) -> AsyncIterator[list[Stream]]:
    opened: list[Stream] = []
    yield opened
    for stream in opened:
        stream.cancel()


def jobs_of(log: list[tuple[object, ...]], job_id: str) -> list[tuple[object, ...]]:
    return [entry for entry in log if entry[1] == job_id]


async def test_jobs_start_with_a_snapshot_then_live_events_and_end(
    stub: Stub, streams: list[Stream]
) -> None:
    for job_id in ("a", "b"):
        await create_job(stub, job_id)
    stream = Stream(stub)
    streams.append(stream)
    stream.send(follow("a"))
    stream.send(follow("b"))
    await stream.until(("event", "b", "SNAPSHOT", 1))
    await stream.until(("event", "a", "SNAPSHOT", 1))
    await stub.ReportProgress(pb.ReportProgressRequest(job_id="a", progress=10))
    await stub.ReportProgress(pb.ReportProgressRequest(job_id="b", progress=20))
    await stub.CompleteJob(pb.CompleteJobRequest(job_id="a", output_key="exports/a/o.mp4"))
    await stream.until(("end", "a", "OK"))
    await stream.until(("event", "b", "PROGRESS", 2))
    assert jobs_of(stream.log, "a") == [
        ("event", "a", "SNAPSHOT", 1),
        ("event", "a", "PROGRESS", 2),
        ("event", "a", "COMPLETE", 3),
        ("end", "a", "OK"),
    ]
    stream.send(unfollow("b"))
    await stream.until(("end", "b", "OK"))
    await stub.ReportProgress(pb.ReportProgressRequest(job_id="b", progress=30))
    stream.done_sending()
    assert await stream.finished() == grpc.StatusCode.OK
    assert jobs_of(stream.log, "b") == [
        ("event", "b", "SNAPSHOT", 1),
        ("event", "b", "PROGRESS", 2),
        ("end", "b", "OK"),
    ]


async def test_a_resume_replays_history_and_a_finished_job_ends(
    stub: Stub, streams: list[Stream]
) -> None:
    await create_job(stub, "r")
    for value in (10, 20, 30):
        await stub.ReportProgress(pb.ReportProgressRequest(job_id="r", progress=value))
    await create_job(stub, "f")
    await stub.CancelJob(pb.CancelJobRequest(job_id="f"))
    stream = Stream(stub)
    streams.append(stream)
    stream.send(follow("r", after=2))
    stream.send(follow("f", after=2))  # finished at 2: nothing to send, it just ends
    await stream.until(("event", "r", "PROGRESS", 4))
    await stream.until(("end", "f", "OK"))
    assert jobs_of(stream.log, "r") == [
        ("event", "r", "PROGRESS", 3),
        ("event", "r", "PROGRESS", 4),
    ]
    assert jobs_of(stream.log, "f") == [("end", "f", "OK")]


async def test_bad_follows_end_with_the_code_watchjob_would_answer(
    stub: Stub, streams: list[Stream]
) -> None:
    await create_job(stub, "ok")
    stream = Stream(stub)
    streams.append(stream)
    stream.send(follow("missing"))
    stream.send(follow("not valid!"))
    stream.send(follow("ok", paths=("status", "nope")))
    stream.send(follow("ok"))
    await stream.until(("end", "missing", "NOT_FOUND"))
    await stream.until(("end", "not valid!", "INVALID_ARGUMENT"))
    await stream.until(("event", "ok", "SNAPSHOT", 1))
    ends = {end.job_id: end.message for m in stream.messages for end in m.ends}
    assert ("missing" in ends["missing"], "job_id" in ends["not valid!"]) == (True, True)
    # The bad mask ended the first follow of "ok"; the second follows it normally.
    assert jobs_of(stream.log, "ok") == [
        ("end", "ok", "INVALID_ARGUMENT"),
        ("event", "ok", "SNAPSHOT", 1),
    ]


async def test_events_committed_together_share_a_message(stub: Stub, streams: list[Stream]) -> None:
    job_ids = [f"j{i}" for i in range(20)]
    for job_id in job_ids:
        await create_job(stub, job_id)
    stream = Stream(stub)
    streams.append(stream)
    for job_id in job_ids:
        stream.send(follow(job_id, paths=("job_id", "status", "version")))
    for job_id in job_ids:
        await stream.until(("event", job_id, "SNAPSHOT", 1))
    stream.messages.clear()
    changes = [
        pb.JobChange(report_progress=pb.ReportProgressRequest(job_id=job_id, progress=50))
        for job_id in job_ids
    ]
    await stub.ApplyChanges(pb.ApplyChangesRequest(changes=changes))
    for job_id in job_ids:
        await stream.until(("event", job_id, "PROGRESS", 2))
    # 20 events, committed in a few group commits: far fewer messages than events.
    assert len(stream.messages) < len(job_ids) / 2, [len(m.events) for m in stream.messages]
    job = stream.messages[0].events[0].job
    assert (job.status, job.user_id, job.HasField("updated_at")) == (
        pb.JOB_STATUS_PROCESSING,
        "",
        False,
    )


async def test_a_slow_follower_keeps_every_status_change(
    server: RunningServer, stub: Stub, streams: list[Stream]
) -> None:
    await create_job(stub, "s")
    stream = Stream(stub)
    streams.append(stream)
    stream.send(follow("s"))
    await stream.until(("event", "s", "SNAPSHOT", 1))
    for value in range(1, 300):
        await stub.ReportProgress(pb.ReportProgressRequest(job_id="s", progress=value / 3))
    await stub.FailJob(pb.FailJobRequest(job_id="s", error="boom"))
    await stream.until(("end", "s", "OK"))
    versions = [cast(int, entry[3]) for entry in jobs_of(stream.log, "s") if entry[0] == "event"]
    assert versions == sorted(set(versions))
    assert jobs_of(stream.log, "s")[-2:] == [("event", "s", "ERROR", 301), ("end", "s", "OK")]
    assert len(server.hub) == 0 or "s" not in server.hub.watched_jobs()


async def test_shutdown_ends_the_stream_cleanly(
    server: RunningServer, stub: Stub, streams: list[Stream]
) -> None:
    await create_job(stub, "x")
    stream = Stream(stub)
    streams.append(stream)
    stream.send(follow("x"))
    await stream.until(("event", "x", "SNAPSHOT", 1))
    server.hub.close()
    assert await stream.finished() == grpc.StatusCode.OK


async def test_the_hub_ends_empty_when_the_stream_goes(
    server: RunningServer, stub: Stub, streams: list[Stream]
) -> None:
    for job_id in ("p", "q"):
        await create_job(stub, job_id)
    stream = Stream(stub)
    stream.send(follow("p"))
    stream.send(follow("q"))
    await stream.until(("event", "q", "SNAPSHOT", 1))
    await stream.until(("event", "p", "SNAPSHOT", 1))
    assert set(server.hub.watched_jobs()) == {"p", "q"}
    stream.cancel()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while len(server.hub):
        assert loop.time() < deadline, server.hub.watched_jobs()
        await asyncio.sleep(0.01)


async def test_following_a_job_again_ends_its_follow_first(
    stub: Stub, streams: list[Stream]
) -> None:
    await create_job(stub, "r")
    await stub.ReportProgress(pb.ReportProgressRequest(job_id="r", progress=10))
    stream = Stream(stub)
    streams.append(stream)
    stream.send(follow("r"))
    await stream.until(("event", "r", "SNAPSHOT", 2))
    stream.send(follow("r", after=1))
    await stream.until(("event", "r", "PROGRESS", 2))
    stream.send(unfollow("r"))
    stream.send(unfollow("never-followed"))
    stream.done_sending()
    assert await stream.finished() == grpc.StatusCode.OK
    # One end per follow, each after its follow's events; unfollowing nothing says nothing.
    assert stream.log == [
        ("event", "r", "SNAPSHOT", 2),
        ("end", "r", "OK"),
        ("event", "r", "PROGRESS", 2),
        ("end", "r", "OK"),
    ]
