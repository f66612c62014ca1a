"""Background work that fails unexpectedly is logged, restarted, and shown in health.

- The relay (PostgreSQL): an event row a newer release wrote, of a type this release does not
  know, written into the database directly with its NOTIFY as that release would. Health says
  NOT_SERVING while the relay cannot go on, SERVING once it can, and watchers get the events.
- The group-commit loop: no input makes it fail today (a failed batch is answered per batch),
  so a bug is put into the batch writer in-process: it returns one outcome too few.
- The retention loop: its first pass raises; later passes still run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.poll import eventually
from support.postgres import scratch_database
from support.processes import ServeProcess
from support.servers import create_job, next_event, service, stub

from jobstate import writes as writes_module
from jobstate.domain import EventType
from jobstate.v1 import jobstate_pb2 as pb

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
WAIT = 30.0


async def health_of(channel: grpc.aio.Channel) -> int:
    # types-grpcio-health-checking declares HealthStub without its methods.
    reply = await health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
        health_pb2.HealthCheckRequest(), timeout=WAIT
    )
    return int(reply.status)


@pytest.fixture
async def postgres_serve(tmp_path: Path) -> AsyncIterator[tuple[ServeProcess, asyncpg.Connection]]:
    async with scratch_database("jobstate_supervise") as url:
        proc = ServeProcess(
            database_url=url.render_as_string(hide_password=False),
            log_path=tmp_path / "serve.log",
        )
        await proc.start()
        admin = await asyncpg.connect(
            url.set(drivername="postgresql").render_as_string(hide_password=False)
        )
        try:
            yield proc, admin
        finally:
            await admin.close()
            await proc.stop()


async def test_an_event_the_relay_cannot_read_shows_in_health_until_the_relay_recovers(
    postgres_serve: tuple[ServeProcess, asyncpg.Connection], tmp_path: Path
) -> None:
    proc, admin = postgres_serve
    async with grpc.aio.insecure_channel(proc.target) as channel:
        client = stub(channel)
        await create_job(client, "j")
        watch = client.WatchJob(pb.WatchJobRequest(job_id="j"), timeout=2 * WAIT)
        assert (await next_event(watch)).job.version == 1  # subscribed: the relay reads for "j"

        async with admin.transaction():
            await admin.execute(
                "INSERT INTO job_events (job_id, version, type, status, progress, message,"
                " output_key, error, external_id, at)"
                " VALUES ('j', 2, 'paused', 'processing', 0, '', '', '', '', $1)",
                datetime.now().astimezone(),
            )
            await admin.execute("UPDATE jobs SET version = 2 WHERE job_id = 'j'")
            await admin.execute("SELECT pg_notify('jobstate_events', 'j:2')")

        async def is_(status: int) -> bool:
            return await health_of(channel) == status

        await eventually(lambda: is_(NOT_SERVING), what="health to report NOT_SERVING", within=WAIT)
        # What a newer release meant is a progress event after all: once readable, the relay
        # is back, health recovers, and the watcher gets the event and what follows.
        await admin.execute(
            "UPDATE job_events SET type = $1 WHERE job_id = 'j' AND version = 2",
            EventType.PROGRESS.value,
        )
        await eventually(lambda: is_(SERVING), what="health to report SERVING again", within=WAIT)
        relayed = await next_event(watch)
        reply = await client.ReportProgress(
            pb.ReportProgressRequest(job_id="j", progress=20), timeout=WAIT
        )
        live = await next_event(watch)
        watch.cancel()

    assert (relayed.type, relayed.job.version) == (pb.EVENT_TYPE_PROGRESS, 2)
    assert (reply.job.version, live.job.version, live.job.progress) == (3, 3, 20.0)
    log = (tmp_path / "serve.log").read_text()
    assert "event-relay failed" in log and "'paused' is not a valid EventType" in log


async def test_a_broken_group_commit_loop_answers_every_write_and_shows_in_health(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        service(tmp_path) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        client = stub(channel)
        await create_job(client, "j")
        real = writes_module.write_batch

        def one_outcome_short(conn: object, writes: list) -> list:  # type: ignore[type-arg]
            return real(conn, writes)[:-1]  # type: ignore[arg-type]

        monkeypatch.setattr(writes_module, "write_batch", one_outcome_short)
        # A deadline on each write only turns "waits forever" into DEADLINE_EXCEEDED.
        with pytest.raises(grpc.aio.AioRpcError) as first:
            await client.ReportProgress(
                pb.ReportProgressRequest(job_id="j", progress=1), timeout=WAIT
            )
        assert first.value.code() == grpc.StatusCode.UNAVAILABLE
        codes: list[grpc.StatusCode] = []

        async def write_then_check_health() -> bool:
            request = pb.ReportProgressRequest(job_id="j", progress=len(codes) + 2)
            try:
                await client.ReportProgress(request, timeout=WAIT)
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as exc:
                codes.append(exc.code())
            return await health_of(channel) == NOT_SERVING

        await eventually(write_then_check_health, what="health to report NOT_SERVING", within=WAIT)
        monkeypatch.undo()

        async def serving() -> bool:
            return await health_of(channel) == SERVING

        await eventually(serving, what="health to report SERVING again", within=WAIT)
        after = await client.ReportProgress(
            pb.ReportProgressRequest(job_id="j", progress=99), timeout=WAIT
        )
        got = await client.GetJob(pb.GetJobRequest(job_id="j"), timeout=WAIT)

    assert set(codes) == {grpc.StatusCode.UNAVAILABLE}
    assert (after.job.progress, got.job) == (99.0, after.job)


async def test_the_retention_loop_survives_an_unexpected_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        service(tmp_path, history_retention=0, retention_interval=0.05) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        client = stub(channel)
        real = server.store.compact
        calls: list[str] = []

        async def first_pass_fails(*args: object) -> int:
            calls.append("pass")
            if len(calls) == 1:
                raise RuntimeError("an unexpected retention failure")
            return await real(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(server.store, "compact", first_pass_fails)
        await create_job(client, "j")
        await client.ReportProgress(pb.ReportProgressRequest(job_id="j", progress=5), timeout=WAIT)
        await client.CompleteJob(pb.CompleteJobRequest(job_id="j", output_key="k"), timeout=WAIT)

        async def compacted() -> bool:
            _, events = await server.store.get_with_events("j", 0)
            return [e.type for e in events] == [EventType.CREATED, EventType.COMPLETE]

        await eventually(compacted, what="a later retention pass to compact the finished job")
        assert await health_of(channel) == SERVING
