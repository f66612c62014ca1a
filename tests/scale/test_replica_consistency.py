"""Two `jobstate serve` replicas on one PostgreSQL database answer as one service would.

- The same keyed CreateJob reaching both replicas at once makes one job (the database's unique
  index decides, not a process's memory).
"""

from __future__ import annotations

import asyncio

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
