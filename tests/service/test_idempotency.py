"""Idempotency keys on CreateJob: every keyed create answers, and one job per (user, key)
within 24 h. (A database of release 0.1.0 gets its unique index from `jobstate migrate`:
test_migrate.py.)

Tests taking `server` run on SQLite and on PostgreSQL (when JOBSTATE_TEST_POSTGRES_URL is set).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

import grpc
import pytest

from jobstate import domain
from jobstate.domain import JobEvent
from jobstate.server import RunningServer
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

from .conftest import WAIT

Stub: TypeAlias = "pb_grpc.JobStateServiceAsyncStub"


async def keyed_create(stub: Stub, key: str, job_id: str = "", user_id: str = "u1") -> pb.Job:
    # A deadline on every call: a create that never answers fails the test instead of hanging.
    request = pb.CreateJobRequest(job_id=job_id, user_id=user_id, kind="k", idempotency_key=key)
    return (await stub.CreateJob(request, timeout=WAIT)).job


async def test_a_keyed_create_whose_key_and_job_id_share_a_lock_shard_answers(
    server: RunningServer, stub: Stub
) -> None:
    # Before 2026-12, a keyed create held the shard lock of `user\0key` while taking the one of
    # its job id from the same pool of non-reentrant locks: when both hashed (crc32) onto one
    # shard, the call waited on itself forever. Pick a key that collides for certain.
    locks = server.service.locks
    key = next(
        f"key{i}"
        for i in itertools.count()
        if locks.shard_of(f"u1\x00key{i}") == locks.shard_of("collide")
    )
    job = await keyed_create(stub, key, job_id="collide")
    again = await keyed_create(stub, key)
    # A job on the same shard is not held up either.
    neighbour = next(
        f"n{i}" for i in itertools.count() if locks.shard_of(f"n{i}") == locks.shard_of("collide")
    )
    other = await stub.CreateJob(
        pb.CreateJobRequest(job_id=neighbour, user_id="u1", kind="k"), timeout=WAIT
    )

    assert (job.job_id, job.version, again.job_id) == ("collide", 1, "collide")
    assert other.job.version == 1


async def test_thousands_of_keyed_creates_with_random_keys_all_answer(sqlite_stub: Stub) -> None:
    # 3,000 random keys on 1,024 shards: before the fix, some key hashed onto its job's shard
    # with a probability of about 95 % and that call (and its shard) hung.
    keys = [uuid.uuid4().hex for _ in range(3000)]
    jobs: list[pb.Job] = []
    for start in range(0, len(keys), 100):
        chunk = keys[start : start + 100]
        jobs += await asyncio.gather(*(keyed_create(sqlite_stub, key) for key in chunk))
    repeated = await asyncio.gather(*(keyed_create(sqlite_stub, key) for key in keys[:100]))

    assert len({job.job_id for job in jobs}) == len(keys)
    assert [job.job_id for job in repeated] == [job.job_id for job in jobs[:100]]


async def test_a_key_reused_after_24_hours_makes_a_new_job(
    server: RunningServer, stub: Stub
) -> None:
    # Jobs created with a key 25 and 23 hours ago (written through the server's own store with
    # the creation time chosen, the only way to age them): the older key has lapsed.
    now = datetime.now(UTC)
    window = now - timedelta(hours=24)
    for job_id, key, age in (("old", "a", 25), ("recent", "b", 23)):
        event = domain.new_job(job_id, "u1", "k", {}, now - timedelta(hours=age), key)
        assert isinstance(await server.store.create(event, window), JobEvent)

    fresh = await keyed_create(stub, "a")
    fresh_again = await keyed_create(stub, "a")
    recent = await keyed_create(stub, "b")
    listed = await stub.ListJobs(pb.ListJobsRequest(user_id="u1", idempotency_key="a"))

    assert (fresh.job_id != "old", fresh.version) == (True, 1)
    assert (fresh_again.job_id, recent.job_id) == (fresh.job_id, "recent")
    assert [job.job_id for job in listed.jobs] == [fresh.job_id]
    assert (await stub.GetJob(pb.GetJobRequest(job_id="old"))).job.version == 1


async def test_a_key_belongs_to_its_user_and_a_taken_job_id_is_refused(stub: Stub) -> None:
    mine = await keyed_create(stub, "k1", job_id="mine")
    theirs = await keyed_create(stub, "k1", user_id="u2")
    # The key wins over a new job id; another user's job id with a fresh key is refused.
    same = await keyed_create(stub, "k1", job_id="another-id")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await keyed_create(stub, "k2", job_id="mine", user_id="u2")

    assert (same.job_id, theirs.job_id != mine.job_id) == ("mine", True)
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert list((await stub.ListJobs(pb.ListJobsRequest(user_id="u2"))).jobs) == [theirs]
