"""Two `jobstate serve` replicas on one PostgreSQL database answer as one service would.

- The same keyed CreateJob reaching both replicas at once makes one job (the database's unique
  index decides, not a process's memory).
- A request that changes nothing is answered from the stored job, not from a replica's cache
  that the other replica has overtaken.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from jobstate.v1 import jobstate_pb2 as pb

from .conftest import Cluster, Replica

pytestmark = pytest.mark.timeout(120)


async def keyed_create(replica: Replica, key: str) -> pb.Job:
    request = pb.CreateJobRequest(user_id="u1", kind="overlay", idempotency_key=key)
    return (await replica.stub.CreateJob(request, timeout=30)).job


async def test_one_keyed_create_sent_to_both_replicas_at_once_makes_one_job(
    cluster: Cluster,
) -> None:
    one, two = await cluster.start(2)
    keys = [f"start-{i}" for i in range(40)]
    pairs = await asyncio.gather(
        *(asyncio.gather(keyed_create(one, key), keyed_create(two, key)) for key in keys)
    )

    assert [a.job_id == b.job_id for a, b in pairs] == [True] * len(keys)
    listed = await one.stub.ListJobs(pb.ListJobsRequest(user_id="u1", page_size=500), timeout=30)
    assert sorted(job.job_id for job in listed.jobs) == sorted(a.job_id for a, _ in pairs)


def state(job: pb.Job) -> tuple[int, int, float, str]:
    return (job.version, job.status, job.progress, job.external_id)


async def test_a_restatement_is_answered_from_the_database_not_a_stale_cache(
    cluster: Cluster,
) -> None:
    one, two = await cluster.start(2)
    await one.stub.CreateJob(pb.CreateJobRequest(job_id="j", user_id="u1", kind="k"), timeout=30)
    submit = pb.MarkSubmittedRequest(job_id="j", external_id="rp-1")
    await one.stub.MarkSubmitted(submit, timeout=30)
    await one.stub.ReportProgress(pb.ReportProgressRequest(job_id="j", progress=10), timeout=30)
    # Replica two moves the job on; replica one still holds version 3 in its cache.
    moved = await two.stub.ReportProgress(
        pb.ReportProgressRequest(job_id="j", progress=50), timeout=30
    )
    lower = await one.stub.ReportProgress(
        pb.ReportProgressRequest(job_id="j", progress=10), timeout=30
    )
    resubmitted = await one.stub.MarkSubmitted(submit, timeout=30)
    assert [state(lower.job), state(resubmitted.job)] == [state(moved.job)] * 2

    cancelled = (await two.stub.CancelJob(pb.CancelJobRequest(job_id="j"), timeout=30)).job
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await one.stub.MarkSubmitted(submit, timeout=30)
    equal = await one.stub.ReportProgress(
        pb.ReportProgressRequest(job_id="j", progress=50), timeout=30
    )

    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "cancelled" in (refused.value.details() or "")
    assert state(equal.job) == state(cancelled) == (5, pb.JOB_STATUS_CANCELLED, 50.0, "rp-1")
