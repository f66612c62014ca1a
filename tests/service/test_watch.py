"""Every WatchJob rule of the contract, against a real server over loopback."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from typing import TypeAlias

import asyncpg
import grpc
import pytest
from google.protobuf.struct_pb2 import Struct
from sqlalchemy.engine import make_url
from support.poll import eventually

from jobstate.server import RunningServer
from jobstate.service import utcnow
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

from .conftest import (
    ChannelFactory,
    ServerFactory,
    Watch,
    admin_dsn,
    create_job,
    log_of,
)

Stub: TypeAlias = "pb_grpc.JobStateServiceAsyncStub"
OK = grpc.StatusCode.OK


async def progress(stub: Stub, job_id: str, value: float, message: str = "") -> pb.Job:
    request = pb.ReportProgressRequest(job_id=job_id, progress=value, message=message)
    return (await stub.ReportProgress(request)).job


async def complete(stub: Stub, job_id: str, key: str = "exports/out.mp4") -> pb.Job:
    return (await stub.CompleteJob(pb.CompleteJobRequest(job_id=job_id, output_key=key))).job


async def test_watch_from_0_is_a_snapshot_then_every_event(stub: Stub) -> None:
    await create_job(stub, "j")
    current = await progress(stub, "j", 10, "starting")
    watch = Watch(stub, "j")
    snapshot = await watch.next()
    assert snapshot is not None
    assert (snapshot.type, snapshot.job) == (pb.EVENT_TYPE_SNAPSHOT, current)

    acked = [
        (await stub.MarkSubmitted(pb.MarkSubmittedRequest(job_id="j", external_id="rp"))).job,
        await progress(stub, "j", 20),
        await progress(stub, "j", 15),  # lower: ignored, no event
        await progress(stub, "j", 30, "muxing"),
        await complete(stub, "j"),
    ]
    rest = await watch.rest()

    assert log_of([snapshot, *rest]) == [
        ("SNAPSHOT", 2),
        ("SUBMITTED", 3),
        ("PROGRESS", 4),
        ("PROGRESS", 5),
        ("COMPLETE", 6),
    ]
    assert [m.job for m in rest] == [acked[0], acked[1], acked[3], acked[4]]
    assert await watch.code() == OK  # the terminal event ends the stream cleanly


async def test_resume_after_version_replays_history_then_live(stub: Stub) -> None:
    await create_job(stub, "j")
    acked: dict[int, pb.Job | None] = {1: None}
    for value in (10, 20, 30, 40):
        job = await progress(stub, "j", value, f"at {value}")
        acked[job.version] = job
    watch = Watch(stub, "j", after=2)
    replayed = await watch.until(5)
    live = [await progress(stub, "j", 50), await complete(stub, "j")]
    rest = await watch.rest()

    assert log_of(replayed + rest) == [
        ("PROGRESS", 3),
        ("PROGRESS", 4),
        ("PROGRESS", 5),
        ("PROGRESS", 6),
        ("COMPLETE", 7),
    ]
    assert [m.job for m in replayed + rest] == [acked[3], acked[4], acked[5], *live]
    assert await watch.code() == OK


async def test_resume_at_the_current_version_waits_for_the_next_event(
    server: RunningServer, stub: Stub
) -> None:
    await create_job(stub, "j")
    current = await progress(stub, "j", 10)
    watch = Watch(stub, "j", after=current.version)
    # Nothing to replay: wait until the server has subscribed the watch, then go on.
    await eventually(lambda: server.hub.watched("j"), "the watch is subscribed")
    assert await watch.nothing_more()
    await progress(stub, "j", 20)
    await stub.FailJob(pb.FailJobRequest(job_id="j", error="boom"))
    assert log_of(await watch.rest()) == [("PROGRESS", 3), ("ERROR", 4)]
    assert await watch.code() == OK


async def test_history_that_no_longer_reaches_back_starts_with_a_snapshot(
    sqlite_server: RunningServer, sqlite_stub: Stub
) -> None:
    stub = sqlite_stub
    await create_job(stub, "j")
    for value in range(1, 11):
        current = await progress(stub, "j", value)
    # Retention keeps only the latest 3 progress versions of a job (versions 9..11).
    assert await sqlite_server.store.compact(utcnow() - timedelta(days=1), 3) > 0

    from_gap = Watch(stub, "j", after=2)
    from_kept = Watch(stub, "j", after=8)
    first = await from_gap.next()
    kept = await from_kept.until(current.version)
    await complete(stub, "j")

    assert first is not None and (first.type, first.job) == (pb.EVENT_TYPE_SNAPSHOT, current)
    assert log_of(await from_gap.rest()) == [("COMPLETE", 12)]
    assert log_of(kept + await from_kept.rest()) == [
        ("PROGRESS", 9),
        ("PROGRESS", 10),
        ("PROGRESS", 11),
        ("COMPLETE", 12),
    ]
    assert (await from_gap.code(), await from_kept.code()) == (OK, OK)


async def test_a_finished_job_whose_progress_history_was_pruned(
    sqlite_server: RunningServer, sqlite_stub: Stub
) -> None:
    stub = sqlite_stub
    await create_job(stub, "j")
    for value in (10, 20, 30):
        await progress(stub, "j", value)
    done = await complete(stub, "j")
    # Retention drops the progress events of jobs finished before the cutoff.
    assert await sqlite_server.store.compact(utcnow() + timedelta(seconds=1), 1000) == 3

    from_gap = Watch(stub, "j", after=1)
    after_pruned = Watch(stub, "j", after=4)
    assert [(m.type, m.job) for m in await from_gap.rest()] == [(pb.EVENT_TYPE_SNAPSHOT, done)]
    assert log_of(await after_pruned.rest()) == [("COMPLETE", 5)]
    assert (await from_gap.code(), await after_pruned.code()) == (OK, OK)


FINISHERS = {
    "complete": lambda stub: stub.CompleteJob(pb.CompleteJobRequest(job_id="j", output_key="k")),
    "error": lambda stub: stub.FailJob(pb.FailJobRequest(job_id="j", error="boom")),
    "cancelled": lambda stub: stub.CancelJob(pb.CancelJobRequest(job_id="j")),
}


@pytest.mark.parametrize("finish", list(FINISHERS))
async def test_watching_a_finished_job_gives_one_snapshot_then_the_end(
    stub: Stub, finish: str
) -> None:
    await create_job(stub, "j")
    await progress(stub, "j", 40)
    finished = (await FINISHERS[finish](stub)).job
    watch = Watch(stub, "j")
    got = await watch.rest()
    assert [(m.type, m.job) for m in got] == [(pb.EVENT_TYPE_SNAPSHOT, finished)]
    assert await watch.code() == OK

    # From any earlier version: the rest of history, ending with the terminal event.
    replay = Watch(stub, "j", after=2)
    assert log_of(await replay.rest()) == [(finish.upper(), 3)]
    assert await replay.code() == OK


@pytest.mark.parametrize("finish", list(FINISHERS))
async def test_a_live_terminal_event_ends_the_stream(sqlite_stub: Stub, finish: str) -> None:
    await create_job(sqlite_stub, "j")
    watch = Watch(sqlite_stub, "j")
    assert log_of(await watch.until(1)) == [("SNAPSHOT", 1)]
    await FINISHERS[finish](sqlite_stub)
    assert log_of(await watch.rest()) == [(finish.upper(), 2)]
    assert await watch.code() == OK


async def test_replay_racing_live_events(stub: Stub) -> None:
    """Watches start (from 0 or from a recent version) while another task floods updates:
    each sees strictly increasing, contiguous versions, each with the acknowledged state."""
    await create_job(stub, "j")
    acked: dict[int, pb.Job] = {}
    reached = asyncio.Condition()
    updates = 200

    async def flood() -> None:
        for i in range(1, updates + 1):
            job = await progress(stub, "j", i * 100 / (updates + 1), f"step {i}")
            acked[job.version] = job
            async with reached:
                reached.notify_all()
        job = await complete(stub, "j")
        acked[job.version] = job

    async def watcher(start_at: int, back: int) -> tuple[int, list[pb.WatchJobResponse]]:
        async with reached:
            await reached.wait_for(lambda: len(acked) >= start_at)
        after = 0 if back < 0 else max(1, max(acked) - back)
        watch = Watch(stub, "j", after=after)
        got = await watch.rest()
        assert await watch.code() == OK
        return after, got

    rng = random.Random(7)
    plan = [(rng.randrange(0, updates), rng.choice([-1, 0, 1, 5, 30])) for _ in range(24)]
    flooder = asyncio.create_task(flood())
    results = await asyncio.gather(*(watcher(s, b) for s, b in plan))
    await flooder
    final = max(acked)

    for after, got in results:
        versions = [m.job.version for m in got]
        first = got[0].job.version if after == 0 else after + 1
        assert versions == list(range(first, final + 1)), (after, versions)
        assert (after != 0) or got[0].type == pb.EVENT_TYPE_SNAPSHOT
        events = got[1:] if after == 0 else got
        assert [m.job for m in events] == [acked[m.job.version] for m in events]
        assert log_of(events)[-1] == ("COMPLETE", final)


async def test_slow_watcher_loses_only_progress_and_does_not_slow_others(
    sqlite_server: RunningServer, sqlite_stub: Stub, connect: ChannelFactory
) -> None:
    stub = sqlite_stub
    # Big params make every message ~60 KB, so a watcher that stops reading fills the HTTP/2
    # flow-control window (BDP probing off: it stays at 64 KB) after a couple of messages.
    params = Struct()
    params.update({"blob": "x" * 60_000})
    await create_job(stub, "j", params=params)
    slow_channel = connect(sqlite_server.port, options=[("grpc.http2.bdp_probe", 0)])
    slow = pb_grpc.JobStateServiceStub(slow_channel).WatchJob(pb.WatchJobRequest(job_id="j"))
    slow_first = await slow.read()  # subscribed; from here on it reads nothing
    assert isinstance(slow_first, pb.WatchJobResponse)
    fast = Watch(stub, "j")
    fast_first = await fast.until(1)  # subscribed too, before any change

    expected: list[tuple[str, int]] = [("SNAPSHOT", 1)]
    for i in range(1, 301):
        if i == 150:  # a status change mid-stream (a recorded external_id is never replaced)
            request = pb.MarkSubmittedRequest(job_id="j", external_id="rp")
            version = (await stub.MarkSubmitted(request)).job.version
            expected.append(("SUBMITTED", version))
        version = (await progress(stub, "j", i / 4)).version
        expected.append(("PROGRESS", version))
    expected.append(("COMPLETE", (await complete(stub, "j")).version))

    # The fast watcher got everything, to the end, while the slow one still reads nothing.
    assert log_of(fast_first + await fast.rest()) == expected
    assert await fast.code() == OK

    slow_got = [slow_first]
    while (message := await slow.read()) is not grpc.aio.EOF:
        assert isinstance(message, pb.WatchJobResponse)
        slow_got.append(message)
    slow_log = log_of(slow_got)
    assert await slow.code() == OK
    versions = [version for _, version in slow_log]
    assert versions == sorted(set(versions))  # strictly increasing
    skipped = [entry for entry in expected if entry not in slow_log]
    assert {kind for kind, _ in skipped} == {"PROGRESS"}  # something was skipped: only progress
    assert [e for e in slow_log if e[0] != "PROGRESS"] == [
        e for e in expected if e[0] != "PROGRESS"
    ]
    assert slow_log[-1] == expected[-1]


async def test_1000_watchers_come_and_go_and_the_hub_ends_empty(
    sqlite_server: RunningServer, sqlite_stub: Stub, connect: ChannelFactory
) -> None:
    server, stub = sqlite_server, sqlite_stub
    jobs = [f"j{i}" for i in range(10)]
    for job_id in jobs:
        await create_job(stub, job_id)
    dropped_channel = connect(server.port)
    dropped_stub = pb_grpc.JobStateServiceStub(dropped_channel)

    # Three ways to go: the client cancels (800), the connection drops (100), the job
    # finishes (100, all on j9).
    cancelled = [Watch(stub, jobs[i % 9]) for i in range(800)]
    dropped = [Watch(dropped_stub, jobs[i % 9]) for i in range(100)]
    finishing = [Watch(stub, "j9") for _ in range(100)]
    watches = cancelled + dropped + finishing
    firsts = await asyncio.gather(*(w.next() for w in watches))
    assert {log_of([m])[0] for m in firsts if m} == {("SNAPSHOT", 1)}
    assert (len(firsts), all(firsts)) == (1000, True)
    assert server.servicer.watch_streams == 1000
    assert sorted(server.hub.watched_jobs()) == jobs

    await asyncio.gather(*(w.cancel() for w in cancelled))
    await eventually(lambda: server.servicer.watch_streams == 200, "cancelled streams are gone")
    await dropped_channel.close(grace=None)
    await eventually(lambda: server.servicer.watch_streams == 100, "dropped streams are gone")
    assert sorted(server.hub.watched_jobs()) == ["j9"]
    await complete(stub, "j9")
    assert [log_of(await w.rest()) for w in finishing] == [[("COMPLETE", 2)]] * 100
    assert [await w.code() for w in finishing] == [OK] * 100
    await eventually(lambda: len(server.hub) == 0, "the hub is empty")
    assert (server.hub.watched_jobs(), server.servicer.watch_streams) == ({}, 0)

    # Still serving: a new watch works and leaves nothing behind.
    watch = Watch(stub, "j0")
    assert log_of(await watch.until(1)) == [("SNAPSHOT", 1)]
    await complete(stub, "j0")
    assert log_of(await watch.rest()) == [("COMPLETE", 2)]
    await eventually(lambda: len(server.hub) == 0, "the hub is empty again")
    assert server.servicer.watch_streams == 0


async def test_server_stop_ends_watch_streams_cleanly(
    start: ServerFactory, sqlite_url: str, connect: ChannelFactory
) -> None:
    running = await start(sqlite_url)
    stub = pb_grpc.JobStateServiceStub(connect(running.port))
    await create_job(stub, "j")
    watches = [Watch(stub, "j") for _ in range(5)]
    for watch in watches:
        assert log_of(await watch.until(1)) == [("SNAPSHOT", 1)]
    await running.stop(grace=5)
    assert [log_of(await w.rest()) for w in watches] == [[]] * 5
    assert [await w.code() for w in watches] == [OK] * 5


async def test_watch_on_one_replica_sees_changes_made_on_another(
    postgres_url: str, start: ServerFactory, connect: ChannelFactory
) -> None:
    a, b = await start(postgres_url), await start(postgres_url)
    stub_a = pb_grpc.JobStateServiceStub(connect(a.port))
    stub_b = pb_grpc.JobStateServiceStub(connect(b.port))
    await create_job(stub_a, "j")
    watch = Watch(stub_a, "j")
    assert log_of(await watch.until(1)) == [("SNAPSHOT", 1)]

    expected = []
    for i in range(1, 41):
        writer = stub_b if i % 3 else stub_a
        version = (await progress(writer, "j", i)).version
        expected.append(("PROGRESS", version))
    expected.append(("COMPLETE", (await complete(stub_b, "j")).version))

    assert log_of(await watch.rest()) == expected
    assert await watch.code() == OK


async def test_watch_streams_per_process_are_limited(
    sqlite_url: str, start: ServerFactory, connect: ChannelFactory
) -> None:
    running = await start(sqlite_url, max_watch_streams=3)
    stub = pb_grpc.JobStateServiceStub(connect(running.port))
    await create_job(stub, "j")
    watches = [Watch(stub, "j") for _ in range(3)]
    for watch in watches:
        assert log_of(await watch.until(1)) == [("SNAPSHOT", 1)]

    refused = Watch(stub, "j")
    assert await refused.rest() == []
    assert await refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "3" in (await refused.call.details() or "")

    await watches[0].cancel()
    await eventually(lambda: running.servicer.watch_streams == 2, "a stream is released")
    again = Watch(stub, "j")
    assert log_of(await again.until(1)) == [("SNAPSHOT", 1)]


async def test_watchers_on_both_replicas_see_interleaved_writes_without_gaps(
    postgres_url: str, start: ServerFactory, connect: ChannelFactory
) -> None:
    replicas = [await start(postgres_url), await start(postgres_url)]
    stubs = [pb_grpc.JobStateServiceStub(connect(r.port)) for r in replicas]
    await create_job(stubs[0], "j")
    watches = [Watch(stub, "j") for stub in stubs for _ in range(2)]
    for watch in watches:
        assert log_of(await watch.until(1)) == [("SNAPSHOT", 1)]

    async def writer(stub: Stub, name: str) -> None:
        for i in range(60):  # one change at a time: a watcher that keeps up misses nothing
            await progress(stub, "j", 50, f"{name}-{i}")

    await asyncio.gather(writer(stubs[0], "a"), writer(stubs[1], "b"))
    final = (await complete(stubs[1], "j")).version
    expected = [("PROGRESS", v) for v in range(2, final)] + [("COMPLETE", final)]
    assert final == 122
    assert [log_of(await w.rest()) for w in watches] == [expected] * len(watches)
    assert [await w.code() for w in watches] == [OK] * len(watches)


async def test_watchers_catch_up_after_the_listen_connection_drops(
    postgres_url: str, start: ServerFactory, connect: ChannelFactory
) -> None:
    # NOTIFYs sent while a replica's LISTEN connection is down are lost; the replica must
    # catch up from history after reconnecting, so its watchers still miss nothing.
    a, b = await start(postgres_url), await start(postgres_url)
    stub_a = pb_grpc.JobStateServiceStub(connect(a.port))
    stub_b = pb_grpc.JobStateServiceStub(connect(b.port))
    await create_job(stub_a, "j")
    watch = Watch(stub_a, "j")
    assert log_of(await watch.until(1)) == [("SNAPSHOT", 1)]
    database = make_url(postgres_url).database
    admin = await asyncpg.connect(admin_dsn())

    async def listening() -> set[int]:
        query = "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%'"
        return {row["pid"] for row in await admin.fetch(query, database)}

    async def two_listening() -> bool:
        return len(await listening()) == 2

    try:
        await eventually(two_listening, "both replicas listen")
        dropped = await listening()
        for pid in dropped:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        expected = [("PROGRESS", (await progress(stub_b, "j", i)).version) for i in range(1, 21)]
        expected.append(("COMPLETE", (await complete(stub_b, "j")).version))
        assert log_of(await watch.rest()) == expected
        assert await watch.code() == OK
        await eventually(two_listening, "both replicas listen again")
        assert not (await listening()) & dropped
    finally:
        await admin.close()
