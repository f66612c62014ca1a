"""Updates to one job are serialised (no lost update, contiguous versions); jobs on other
shards do not wait; replicas on one PostgreSQL stay correct through the version check."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from typing import TypeAlias

import grpc

from jobstate.server import RunningServer
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

from .conftest import WAIT, ChannelFactory, ServerFactory, Watch, create_job

Stub: TypeAlias = "pb_grpc.JobStateServiceAsyncStub"


async def full_history(stub: Stub, job_id: str) -> dict[int, pb.Job]:
    """version -> the job right after that version's change, for versions 2.. (finished job)."""
    watch = Watch(stub, job_id, after=1)
    got = await watch.rest()
    assert await watch.code() == grpc.StatusCode.OK
    return {m.job.version: m.job for m in got}


def report(
    stub: Stub, job_id: str, value: float, message: str
) -> grpc.aio.UnaryUnaryCall[pb.ReportProgressRequest, pb.ReportProgressResponse]:
    return stub.ReportProgress(
        pb.ReportProgressRequest(job_id=job_id, progress=value, message=message)
    )


async def test_500_concurrent_reports_on_one_job_lose_nothing(stub: Stub) -> None:
    await create_job(stub, "j")
    messages = [f"m{i}" for i in range(500)]
    # Same progress, a different message each: every one is a real change, so every one must
    # get its own version.
    answers = await asyncio.gather(*(report(stub, "j", 50, m) for m in messages))
    done = (await stub.CompleteJob(pb.CompleteJobRequest(job_id="j", output_key="k"))).job
    history = await full_history(stub, "j")

    assert sorted(history) == list(range(2, 503))
    assert done.version == 502
    assert sorted((a.job.version, a.job.message) for a in answers) == [
        (v, history[v].message) for v in range(2, 502)
    ]
    assert sorted(history[v].message for v in range(2, 502)) == sorted(messages)
    assert [a.job for a in answers] == [history[a.job.version] for a in answers]


async def test_500_concurrent_progress_and_complete_rpcs_on_one_job(stub: Stub) -> None:
    await create_job(stub, "j")
    rng = random.Random(3)
    calls = [("progress", i / 5) for i in range(1, 451)] + [("complete", 100.0)] * 50
    rng.shuffle(calls)

    def call(
        kind: str, value: float
    ) -> Awaitable[pb.CompleteJobResponse | pb.ReportProgressResponse]:
        if kind == "complete":
            return stub.CompleteJob(pb.CompleteJobRequest(job_id="j", output_key="exports/j"))
        return report(stub, "j", value, f"at {value}")

    # Every call is OK: a report after completion is lower than 100 (accepted, ignored) and a
    # repeated CompleteJob with the same key restates the job.
    answers = [a.job for a in await asyncio.gather(*(call(k, v) for k, v in calls))]
    final = (await stub.GetJob(pb.GetJobRequest(job_id="j"))).job
    history = await full_history(stub, "j")

    assert sorted(history) == list(range(2, final.version + 1))
    assert history[final.version] == final
    statuses = [history[v].status for v in sorted(history)]
    assert statuses.count(pb.JOB_STATUS_COMPLETE) == 1
    assert statuses[-1] == pb.JOB_STATUS_COMPLETE
    progresses = [history[v].progress for v in sorted(history)]
    assert progresses == sorted(progresses)
    # No answer shows a state that history does not hold at that version (no lost update).
    assert [a for a in answers if a.version < 2] == []
    assert [a for a in answers if history[a.version] != a] == []
    completes = [a for (kind, _), a in zip(calls, answers, strict=True) if kind == "complete"]
    assert {a.version for a in completes} == {final.version}


async def test_jobs_on_other_shards_do_not_wait_for_a_held_lock(
    sqlite_server: RunningServer, sqlite_stub: Stub
) -> None:
    stub, locks = sqlite_stub, sqlite_server.service.locks
    held = "held"
    others = [f"other{i}" for i in range(200)]
    others = [job_id for job_id in others if locks.shard_of(job_id) != locks.shard_of(held)][:50]
    for job_id in [held, *others]:
        await create_job(stub, job_id)

    async with locks.lock_for(held):
        blocked = asyncio.ensure_future(report(stub, held, 10, "waits"))
        # Every job on another shard is changed, watched to completion and read back while
        # the held job's lock is taken.
        # (A deadline only turns "waits for the held lock forever" into a clear failure.)
        answers = await asyncio.wait_for(
            asyncio.gather(*(report(stub, job_id, 10, "ok") for job_id in others)), WAIT
        )
        finished = await asyncio.wait_for(
            asyncio.gather(
                *(
                    stub.CompleteJob(pb.CompleteJobRequest(job_id=job_id, output_key="k"))
                    for job_id in others
                )
            ),
            WAIT,
        )
        assert {(a.job.version, a.job.progress) for a in answers} == {(2, 10.0)}
        assert {(f.job.version, f.job.status) for f in finished} == {(3, pb.JOB_STATUS_COMPLETE)}
        # The held job has not changed: its change waits for the lock.
        held_now = (await stub.GetJob(pb.GetJobRequest(job_id=held))).job
        assert (held_now.version, blocked.done()) == (1, False)
    assert (await blocked).job.version == 2


async def test_two_replicas_on_one_postgres_keep_versions_contiguous(
    postgres_url: str, start: ServerFactory, connect: ChannelFactory
) -> None:
    replicas = [await start(postgres_url), await start(postgres_url)]
    stubs = [pb_grpc.JobStateServiceStub(connect(r.port)) for r in replicas]
    await create_job(stubs[0], "j")
    messages = [f"m{i}" for i in range(200)]
    answers = await asyncio.gather(
        *(report(stubs[i % 2], "j", 50, m) for i, m in enumerate(messages))
    )
    await stubs[1].CompleteJob(pb.CompleteJobRequest(job_id="j", output_key="k"))

    for stub in stubs:
        history = await full_history(stub, "j")
        assert sorted(history) == list(range(2, 203))
        assert sorted(history[v].message for v in range(2, 202)) == sorted(messages)
        assert [a.job for a in answers] == [history[a.job.version] for a in answers]


async def test_replicas_starting_together_on_a_fresh_database(
    postgres_url: str, start: ServerFactory, connect: ChannelFactory
) -> None:
    # Schema creation races between replicas must be harmless.
    replicas = await asyncio.gather(*(start(postgres_url) for _ in range(3)))
    stubs = [pb_grpc.JobStateServiceStub(connect(r.port)) for r in replicas]
    await create_job(stubs[0], "j")
    versions = [
        (await report(stub, "j", 10 * (i + 1), "")).job.version for i, stub in enumerate(stubs)
    ]
    assert versions == [2, 3, 4]
