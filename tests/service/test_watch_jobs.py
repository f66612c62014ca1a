"""WatchJobs: every job of a user on one stream — initial state, a marker, then live events."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import TypeAlias

import asyncpg
import grpc
import pytest
import sqlalchemy
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.struct_pb2 import Struct
from sqlalchemy.engine import make_url
from support.poll import eventually

from jobstate import userwatch
from jobstate.server import RunningServer
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc
from jobstate.wire import MAX_AFTER_VERSIONS

from .conftest import WAIT, ChannelFactory, ServerFactory, create_job

Stub: TypeAlias = "pb_grpc.JobStateServiceAsyncStub"
Entry = tuple[object, ...]


class Stream:
    """One WatchJobs call; what arrives is logged as ("event", job_id, type, version) and
    ("initial", truncated, unknown_job_ids), in arrival order."""

    def __init__(
        self,
        stub: Stub,
        user_id: str = "u1",
        statuses: Iterable[pb.JobStatus.ValueType] = (),
        after: Mapping[str, int] | None = None,
        paths: Iterable[str] = (),
    ) -> None:
        request = pb.WatchJobsRequest(
            user_id=user_id,
            statuses=list(statuses),
            after_versions=dict(after or {}),
            read_mask=FieldMask(paths=list(paths)),
        )
        self.call = stub.WatchJobs(request)
        self.log: list[Entry] = []
        self.messages: list[pb.WatchJobsResponse] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.call:
                self.messages.append(message)
                for event in message.events:
                    kind = pb.EventType.Name(event.type).removeprefix("EVENT_TYPE_")
                    self.log.append(("event", event.job.job_id, kind, event.job.version))
                if message.HasField("initial_state_complete"):
                    marker = message.initial_state_complete
                    self.log.append(("initial", marker.truncated, list(marker.unknown_job_ids)))
        except grpc.aio.AioRpcError:
            pass  # the status is read from the call

    async def until(self, entry: Entry) -> list[Entry]:
        await eventually(lambda: entry in self.log or self._reader.done(), f"{entry} arrives")
        assert entry in self.log, self.log
        return self.log

    async def nothing_more(self, within: float = 0.3) -> bool:
        """True if nothing arrives within a short wait (the stream staying open)."""
        before = len(self.log)
        await asyncio.sleep(within)  # NOTE: waiting for an absence, not synchronising
        return len(self.log) == before and not self._reader.done()

    async def status(self) -> tuple[grpc.StatusCode, str]:
        await asyncio.wait_for(self._reader, WAIT)
        return await self.call.code(), await self.call.details() or ""

    def cancel(self) -> None:
        self.call.cancel()


async def progress(stub: Stub, job_id: str, value: float) -> pb.Job:
    request = pb.ReportProgressRequest(job_id=job_id, progress=value)
    reply: pb.ReportProgressResponse = await stub.ReportProgress(request)
    return reply.job


async def test_initial_state_then_marker_then_live_events_of_every_job_of_the_user(
    server: RunningServer, stub: Stub
) -> None:
    await create_job(stub, "pending")
    await create_job(stub, "running")
    await progress(stub, "running", 10)
    await create_job(stub, "done")
    await stub.CancelJob(pb.CancelJobRequest(job_id="done"))
    await create_job(stub, "foreign", user_id="u2")

    stream = Stream(stub)
    await stream.until(("initial", False, []))
    # Unfinished jobs only, newest first; another user's never.
    assert stream.log == [
        ("event", "running", "SNAPSHOT", 2),
        ("event", "pending", "SNAPSHOT", 1),
        ("initial", False, []),
    ]

    await create_job(stub, "new")
    await progress(stub, "pending", 5)
    await progress(stub, "foreign", 5)
    await stub.CompleteJob(pb.CompleteJobRequest(job_id="running", output_key="out.mp4"))
    await stream.until(("event", "running", "COMPLETE", 3))
    assert stream.log[3:] == [
        ("event", "new", "CREATED", 1),
        ("event", "pending", "PROGRESS", 2),
        ("event", "running", "COMPLETE", 3),
    ]
    assert await stream.nothing_more()
    stream.cancel()
    await eventually(lambda: len(server.hub) == 0, "the hub is empty again")


async def test_after_versions_resume_without_gap_or_repeat_and_name_unknown_jobs(
    server: RunningServer, stub: Stub
) -> None:
    await create_job(stub, "resumed")
    for value in (10, 20, 30):
        await progress(stub, "resumed", value)  # versions 2..4
    await create_job(stub, "finished")
    await stub.FailJob(pb.FailJobRequest(job_id="finished", error="boom"))  # version 2
    await create_job(stub, "theirs", user_id="u2")

    after = {"resumed": 2, "finished": 1, "theirs": 1, "missing": 3}
    stream = Stream(stub, after=after)
    await stream.until(("initial", False, ["missing", "theirs"]))
    # A resumed job is replayed after its version (finished or not); nothing of the others.
    assert sorted(stream.log[:-1]) == [
        ("event", "finished", "ERROR", 2),
        ("event", "resumed", "PROGRESS", 3),
        ("event", "resumed", "PROGRESS", 4),
    ]
    await progress(stub, "resumed", 40)
    await progress(stub, "theirs", 40)
    await stream.until(("event", "resumed", "PROGRESS", 5))
    assert await stream.nothing_more()
    stream.cancel()


async def test_a_resumed_job_whose_history_was_trimmed_starts_with_a_snapshot(
    server: RunningServer, stub: Stub
) -> None:
    await create_job(stub, "trimmed")
    for value in (10, 20, 30):
        await progress(stub, "trimmed", value)
    # Retention removed versions 2 and 3 (as it trims PROGRESS of long jobs).
    await server.store.db.write(
        lambda conn: conn.execute(
            sqlalchemy.text("DELETE FROM job_events WHERE job_id = 'trimmed' AND version < 4")
        )
    )
    stream = Stream(stub, after={"trimmed": 1})
    await stream.until(("initial", False, []))
    assert stream.log == [("event", "trimmed", "SNAPSHOT", 4), ("initial", False, [])]
    stream.cancel()


async def test_a_status_filter_sends_jobs_entering_it_and_their_leaving(
    server: RunningServer, stub: Stub
) -> None:
    await create_job(stub, "waiting")
    await create_job(stub, "working")
    await progress(stub, "working", 10)

    stream = Stream(stub, statuses=[pb.JOB_STATUS_PROCESSING])
    await stream.until(("initial", False, []))
    assert stream.log == [("event", "working", "SNAPSHOT", 2), ("initial", False, [])]

    await create_job(stub, "later")  # PENDING: not in the filter
    await progress(stub, "later", 5)  # now PROCESSING: sent from here
    await stub.CompleteJob(pb.CompleteJobRequest(job_id="working", output_key="k"))
    await stream.until(("event", "working", "COMPLETE", 3))
    assert stream.log[2:] == [
        ("event", "later", "PROGRESS", 2),
        ("event", "working", "COMPLETE", 3),
    ]
    stream.cancel()


async def test_read_mask_leaves_fields_out_but_never_what_tells_events_apart(
    server: RunningServer, stub: Stub
) -> None:
    params = Struct()
    params.update({"size": 1})
    await create_job(stub, "masked", params=params)
    stream = Stream(stub, paths=["progress"])
    await stream.until(("initial", False, []))
    job = stream.messages[0].events[0].job
    assert (job.job_id, job.version, job.status, job.kind, job.HasField("params")) == (
        "masked",
        1,
        pb.JOB_STATUS_PENDING,
        "",
        False,
    )
    stream.cancel()


async def test_the_initial_state_is_capped_and_says_so(
    server: RunningServer, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(userwatch, "MAX_INITIAL_JOBS", 2)
    for job_id in ("one", "two", "three"):
        await create_job(stub, job_id)
    stream = Stream(stub)
    await stream.until(("initial", True, []))
    assert stream.log == [
        ("event", "three", "SNAPSHOT", 1),
        ("event", "two", "SNAPSHOT", 1),
        ("initial", True, []),
    ]
    stream.cancel()


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"user_id": ""}, "user_id is required"),
        (
            {"after_versions": {f"j{i}": 1 for i in range(MAX_AFTER_VERSIONS + 1)}},
            f"after_versions has {MAX_AFTER_VERSIONS + 1} entries; the limit is "
            f"{MAX_AFTER_VERSIONS}",
        ),
        (
            {"after_versions": {"bad id": 1}},
            "after_versions: job_id must match [A-Za-z0-9_-]{1,128}",
        ),
        ({"read_mask": FieldMask(paths=["nope"])}, "read_mask names fields Job does not have"),
        ({"statuses": [42]}, "statuses contains an unknown status 42"),
    ],
)
async def test_bad_requests_are_invalid_argument(
    sqlite_server: RunningServer,
    sqlite_stub: Stub,
    request_fields: dict[str, object],
    message: str,
) -> None:
    request = pb.WatchJobsRequest(**{"user_id": "u1", **request_fields})  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in sqlite_stub.WatchJobs(request, timeout=WAIT):
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (info.value.details() or "")
    assert sqlite_server.servicer.watch_streams == 0


async def test_streams_beyond_the_cap_are_resource_exhausted(
    sqlite_url: str, start: ServerFactory, connect: ChannelFactory
) -> None:
    server = await start(sqlite_url, max_watch_streams=1)
    stub = pb_grpc.JobStateServiceStub(connect(server.port))
    first = Stream(stub)
    await first.until(("initial", False, []))
    second = Stream(stub)
    assert await second.status() == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "this server already serves 1 watch streams",
    )
    first.cancel()


async def test_shutdown_ends_the_stream_cleanly(sqlite_url: str, start: ServerFactory) -> None:
    server = await start(sqlite_url)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stream = Stream(pb_grpc.JobStateServiceStub(channel))
        await stream.until(("initial", False, []))
        await server.stop(grace=5)
        assert await stream.status() == (grpc.StatusCode.OK, "")


async def test_a_slow_watcher_loses_only_progress(
    sqlite_server: RunningServer, sqlite_stub: Stub, connect: ChannelFactory
) -> None:
    stub = sqlite_stub
    # Big params make every event ~60 KB, so a watcher that stops reading fills the HTTP/2
    # flow-control window (BDP probing off: it stays at 64 KB) after a message or two.
    params = Struct()
    params.update({"blob": "x" * 60_000})
    await create_job(stub, "j", params=params)
    slow_channel = connect(sqlite_server.port, options=[("grpc.http2.bdp_probe", 0)])
    request = pb.WatchJobsRequest(user_id="u1")
    slow = pb_grpc.JobStateServiceStub(slow_channel).WatchJobs(request)
    first = await slow.read()  # the initial state; then it reads nothing
    assert isinstance(first, pb.WatchJobsResponse)
    assert first.HasField("initial_state_complete")

    expected: list[tuple[str, int]] = []
    for i in range(1, 301):
        if i == 150:  # a status change mid-stream
            submit = pb.MarkSubmittedRequest(job_id="j", external_id="rp")
            expected.append(("SUBMITTED", (await stub.MarkSubmitted(submit)).job.version))
        expected.append(("PROGRESS", (await progress(stub, "j", i / 4)).version))
    done = await stub.CompleteJob(pb.CompleteJobRequest(job_id="j", output_key="k"))
    expected.append(("COMPLETE", done.job.version))

    got: list[tuple[str, int]] = []
    while not got or got[-1][0] != "COMPLETE":
        message = await asyncio.wait_for(slow.read(), WAIT)
        assert isinstance(message, pb.WatchJobsResponse)
        for event in message.events:
            kind = pb.EventType.Name(event.type).removeprefix("EVENT_TYPE_")
            got.append((kind, event.job.version))
    slow.cancel()
    versions = [version for _, version in got]
    assert versions == sorted(set(versions))  # strictly increasing
    skipped = [entry for entry in expected if entry not in got]
    assert {kind for kind, _ in skipped} == {"PROGRESS"}  # something was skipped: only progress
    assert [e for e in got if e[0] != "PROGRESS"] == [e for e in expected if e[0] != "PROGRESS"]


async def test_an_older_releases_notification_without_a_user_still_reaches_the_user_watch(
    postgres_url: str, start: ServerFactory, connect: ChannelFactory
) -> None:
    """During a rolling upgrade a replica of the release before WatchJobs notifies
    `job_id:version`: the relay reads the job to learn whose it is."""
    server = await start(postgres_url)
    stub = pb_grpc.JobStateServiceStub(connect(server.port))
    await create_job(stub, "upgrading")
    stream = Stream(stub)
    await stream.until(("initial", False, []))
    # What an older replica commits for a ReportProgress, written behind this one's back.
    admin = await asyncpg.connect(admin_dsn_of(postgres_url))
    try:
        async with admin.transaction():
            await admin.execute(
                "UPDATE jobs SET version = 2, progress = 50, status = 'processing'"
                " WHERE job_id = 'upgrading'"
            )
            await admin.execute(
                "INSERT INTO job_events (job_id, version, type, status, progress, message,"
                " output_key, error, external_id, at) VALUES ('upgrading', 2, 'progress',"
                " 'processing', 50, '', '', '', '', now())"
            )
            await admin.execute("SELECT pg_notify('jobstate_events', 'upgrading:2')")
    finally:
        await admin.close()
    await stream.until(("event", "upgrading", "PROGRESS", 2))
    stream.cancel()


def admin_dsn_of(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
