"""Every RPC and every status code of the contract, against a real server over loopback.

Tests taking `stub` run on SQLite and on PostgreSQL (when JOBSTATE_TEST_POSTGRES_URL is set);
`sqlite_stub` ones check behaviour that does not depend on the store.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import grpc
import pytest
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from jobstate import domain, wire
from jobstate import errors as domain_errors
from jobstate.server import RunningServer
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

from .conftest import (
    ChannelFactory,
    ServerFactory,
    create_job,
    drop_database,
    history,
    rpc_error,
)

Stub: TypeAlias = "pb_grpc.JobStateServiceAsyncStub"
OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXISTS = grpc.StatusCode.ALREADY_EXISTS
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
SERVICE = "jobstate.v1.JobStateService"


def struct(value: dict[str, Any]) -> Struct:
    message = Struct()
    message.update(value)
    return message


async def get(stub: Stub, job_id: str) -> pb.Job:
    return (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job


# --- CreateJob / GetJob -------------------------------------------------------------------


async def test_create_job_is_pending_at_version_1(stub: Stub) -> None:
    params = struct({"fps": 30, "clips": [{"start": 1.5, "text": "héllo"}], "hd": True, "x": None})
    job = await create_job(stub, "job-1", user_id="u1", kind="overlay", params=params)

    assert (job.job_id, job.user_id, job.kind, job.status, job.version, job.progress) == (
        "job-1",
        "u1",
        "overlay",
        pb.JOB_STATUS_PENDING,
        1,
        0.0,
    )
    assert job.params == params
    assert (job.message, job.output_key, job.error, job.external_id) == ("", "", "", "")
    assert job.created_at == job.updated_at
    assert job.created_at.ToDatetime(UTC) > datetime.now(UTC) - timedelta(minutes=5)
    assert not job.HasField("completed_at")
    assert await get(stub, "job-1") == job


async def test_create_job_again_by_the_same_user_returns_the_existing_job(stub: Stub) -> None:
    first = await create_job(stub, "job-1", user_id="u1", kind="overlay")
    await stub.ReportProgress(pb.ReportProgressRequest(job_id="job-1", progress=5))

    again = await create_job(stub, "job-1", user_id="u1", kind="other", params=struct({"a": 1}))

    assert (again.version, again.kind, again.status, again.created_at) == (
        2,
        "overlay",
        pb.JOB_STATUS_PROCESSING,
        first.created_at,
    )
    assert await history(stub, "job-1") == [("PROGRESS", 2)]


async def test_create_job_taken_by_another_user_is_already_exists(stub: Stub) -> None:
    first = await create_job(stub, "job-1", user_id="u1")

    code, details = await rpc_error(create_job(stub, "job-1", user_id="u2"))

    assert (code, "job-1" in details) == (EXISTS, True)
    assert await get(stub, "job-1") == first


async def test_create_job_without_id_gets_a_server_uuid(stub: Stub) -> None:
    a = await create_job(stub, user_id="u1")
    b = await create_job(stub, user_id="u1")

    assert a.job_id != b.job_id
    for job in (a, b):
        assert uuid.UUID(job.job_id).version == 4
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,128}", job.job_id)
        assert (await get(stub, job.job_id)).version == 1


async def test_idempotency_key_returns_the_first_job(stub: Stub) -> None:
    first = await create_job(stub, user_id="u1", idempotency_key="start-1")
    again = await create_job(stub, user_id="u1", idempotency_key="start-1")
    named = await create_job(stub, "named", user_id="u1", idempotency_key="start-1")
    other_key = await create_job(stub, user_id="u1", idempotency_key="start-2")
    other_user = await create_job(stub, user_id="u2", idempotency_key="start-1")

    assert [again.job_id, named.job_id] == [first.job_id, first.job_id]
    assert len({first.job_id, other_key.job_id, other_user.job_id}) == 3
    assert (await rpc_error(get(stub, "named")))[0] == NOT_FOUND


async def test_concurrent_creates_with_one_idempotency_key_make_one_job(stub: Stub) -> None:
    jobs = await asyncio.gather(
        *(create_job(stub, user_id="u1", idempotency_key="k") for _ in range(20))
    )
    assert len({job.job_id for job in jobs}) == 1
    listed = await stub.ListJobs(pb.ListJobsRequest(user_id="u1"))
    assert [job.job_id for job in listed.jobs] == [jobs[0].job_id]


async def test_concurrent_creates_of_one_job_id_by_two_users(stub: Stub) -> None:
    calls = [create_job(stub, "contested", user_id=f"u{i % 2}") for i in range(20)]
    results = await asyncio.gather(*calls, return_exceptions=True)

    owner = (await get(stub, "contested")).user_id
    outcome = sorted(
        (f"u{i % 2}", r.code() if isinstance(r, grpc.aio.AioRpcError) else OK)
        for i, r in enumerate(results)
    )
    loser = "u1" if owner == "u0" else "u0"
    assert outcome == sorted([(owner, OK)] * 10 + [(loser, EXISTS)] * 10)
    assert (await get(stub, "contested")).version == 1


async def test_get_job_not_found(stub: Stub) -> None:
    code, details = await rpc_error(get(stub, "nope"))
    assert (code, "nope" in details) == (NOT_FOUND, True)


@pytest.mark.parametrize(
    ("method", "request_"),
    [
        ("MarkSubmitted", pb.MarkSubmittedRequest(job_id="nope", external_id="rp")),
        ("ReportProgress", pb.ReportProgressRequest(job_id="nope", progress=1)),
        ("CompleteJob", pb.CompleteJobRequest(job_id="nope", output_key="exports/x")),
        ("FailJob", pb.FailJobRequest(job_id="nope", error="e")),
        ("CancelJob", pb.CancelJobRequest(job_id="nope")),
    ],
)
async def test_changing_a_missing_job_is_not_found(
    sqlite_stub: Stub, method: str, request_: Any
) -> None:
    code, details = await rpc_error(getattr(sqlite_stub, method)(request_))
    assert (code, "nope" in details) == (NOT_FOUND, True)
    assert (await rpc_error(get(sqlite_stub, "nope")))[0] == NOT_FOUND


# --- ListJobs -----------------------------------------------------------------------------


async def list_all(stub: Stub, page_size: int, **query: Any) -> tuple[list[str], int]:
    """Every job id, page by page, and the number of pages."""
    ids: list[str] = []
    token, pages = "", 0
    while True:
        page = await stub.ListJobs(
            pb.ListJobsRequest(page_size=page_size, page_token=token, **query)
        )
        ids += [job.job_id for job in page.jobs]
        pages += 1
        assert len(page.jobs) <= page_size
        token = page.next_page_token
        if not token:
            return ids, pages


async def test_list_jobs_newest_first_with_pagination(stub: Stub) -> None:
    created = [await create_job(stub, f"j{i:02d}", user_id="u1") for i in range(7)]
    await create_job(stub, "theirs", user_id="u2")

    ids, pages = await list_all(stub, 3, user_id="u1")

    assert (ids, pages) == ([job.job_id for job in reversed(created)], 3)
    one_page = await stub.ListJobs(pb.ListJobsRequest(user_id="u1", page_size=50))
    assert ([job.job_id for job in one_page.jobs], one_page.next_page_token) == (ids, "")
    default = await stub.ListJobs(pb.ListJobsRequest(user_id="u1"))
    assert [job.job_id for job in default.jobs] == ids
    everyone, _ = await list_all(stub, 4)
    assert everyone == ["theirs", *ids]


async def test_list_jobs_breaks_created_at_ties_by_job_id(
    server: RunningServer, stub: Stub
) -> None:
    # Jobs created in the same instant (written through the server's own store, the only way
    # to pin created_at) must page without loss or duplicates: created_at, then job_id, desc.
    instant = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    tied = ["b", "e", "a", "d", "c"]
    for job_id in tied:
        assert await server.store.create(domain.new_job(job_id, "u1", "k", {}, instant), instant)
    older = domain.new_job("z-older", "u1", "k", {}, instant - timedelta(microseconds=1))
    assert await server.store.create(older, instant)
    newest = await create_job(stub, "a-newest", user_id="u1")

    expected = [newest.job_id, "e", "d", "c", "b", "a", "z-older"]
    for size in (1, 2, 3, 10):
        assert (await list_all(stub, size, user_id="u1"))[0] == expected


async def test_list_jobs_pages_stay_stable_while_jobs_are_created(stub: Stub) -> None:
    for i in range(5):
        await create_job(stub, f"old{i}", user_id="u1")
    first = await stub.ListJobs(pb.ListJobsRequest(user_id="u1", page_size=2))
    for i in range(3):
        await create_job(stub, f"new{i}", user_id="u1")
    token, rest = first.next_page_token, []
    while token:
        page = await stub.ListJobs(pb.ListJobsRequest(user_id="u1", page_size=2, page_token=token))
        rest += [job.job_id for job in page.jobs]
        token = page.next_page_token
    assert [job.job_id for job in first.jobs] + rest == ["old4", "old3", "old2", "old1", "old0"]


async def test_list_jobs_status_filter(stub: Stub) -> None:
    for job_id in ("p", "r", "c", "e", "x"):
        await create_job(stub, job_id, user_id="u1")
    await stub.MarkSubmitted(pb.MarkSubmittedRequest(job_id="r", external_id="rp"))
    await stub.CompleteJob(pb.CompleteJobRequest(job_id="c", output_key="exports/c"))
    await stub.FailJob(pb.FailJobRequest(job_id="e", error="boom"))
    await stub.CancelJob(pb.CancelJobRequest(job_id="x"))

    async def ids(*statuses: pb.JobStatus.ValueType) -> list[str]:
        page = await stub.ListJobs(pb.ListJobsRequest(user_id="u1", statuses=statuses))
        return [job.job_id for job in page.jobs]

    assert await ids() == ["x", "e", "c", "r", "p"]
    assert await ids(pb.JOB_STATUS_PENDING) == ["p"]
    assert await ids(pb.JOB_STATUS_PROCESSING) == ["r"]
    assert await ids(pb.JOB_STATUS_COMPLETE, pb.JOB_STATUS_ERROR, pb.JOB_STATUS_CANCELLED) == [
        "x",
        "e",
        "c",
    ]


async def test_list_jobs_output_key_filter(stub: Stub) -> None:
    for job_id in ("a", "b", "c"):
        await create_job(stub, job_id, user_id="u1")
    await create_job(stub, "other", user_id="u2")
    await stub.CompleteJob(pb.CompleteJobRequest(job_id="a", output_key="exports/same.mp4"))
    await stub.CompleteJob(pb.CompleteJobRequest(job_id="b", output_key="exports/b.mp4"))
    await stub.CompleteJob(pb.CompleteJobRequest(job_id="other", output_key="exports/same.mp4"))

    async def ids(user_id: str, key: str) -> list[str]:
        page = await stub.ListJobs(pb.ListJobsRequest(user_id=user_id, output_key=key))
        return [job.job_id for job in page.jobs]

    assert await ids("u1", "exports/same.mp4") == ["a"]
    assert await ids("u1", "exports/none.mp4") == []
    assert await ids("", "exports/same.mp4") == ["other", "a"]


async def test_list_jobs_idempotency_key_filter(stub: Stub) -> None:
    first = await create_job(stub, user_id="u1", idempotency_key="start-1")
    await create_job(stub, user_id="u1", idempotency_key="start-2")
    await create_job(stub, user_id="u2", idempotency_key="start-1")

    async def ids(user_id: str, key: str) -> list[str]:
        page = await stub.ListJobs(pb.ListJobsRequest(user_id=user_id, idempotency_key=key))
        return [job.job_id for job in page.jobs]

    assert (await ids("u1", "start-1"), await ids("u1", "never")) == ([first.job_id], [])
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListJobs(pb.ListJobsRequest(idempotency_key="start-1"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "user_id" in (raised.value.details() or "")


async def test_list_jobs_updated_before(stub: Stub) -> None:
    a = await create_job(stub, "a", user_id="u1")
    b = await create_job(stub, "b", user_id="u1")
    bound = Timestamp()
    bound.CopyFrom(b.updated_at)

    async def ids() -> list[str]:
        page = await stub.ListJobs(pb.ListJobsRequest(user_id="u1", updated_before=bound))
        return [job.job_id for job in page.jobs]

    assert (await ids(), a.updated_at.ToDatetime() < bound.ToDatetime()) == (["a"], True)
    moved = (await stub.ReportProgress(pb.ReportProgressRequest(job_id="a", progress=1))).job
    assert await ids() == []  # a changed after the bound
    bound.FromDatetime(moved.updated_at.ToDatetime() + timedelta(microseconds=1))
    assert await ids() == ["b", "a"]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ListJobsRequest(page_size=-1), "page_size"),
        (pb.ListJobsRequest(page_token="not-a-token"), "page_token"),
        (pb.ListJobsRequest(page_token="W10"), "page_token"),  # base64 of "[]"
        (pb.ListJobsRequest(statuses=[pb.JOB_STATUS_UNSPECIFIED]), "statuses"),
        (pb.ListJobsRequest(statuses=[pb.JobStatus.ValueType(99)]), "statuses"),
        (pb.ListJobsRequest(user_id="u" * 257), "user_id"),
    ],
    ids=lambda x: str(x).replace("\n", " ")[:30],
)
async def test_list_jobs_invalid_argument(sqlite_stub: Stub, request_: Any, field: str) -> None:
    code, details = await rpc_error(sqlite_stub.ListJobs(request_))
    assert (code, field in details) == (INVALID, True), details


# --- changes ------------------------------------------------------------------------------


async def test_mark_submitted(stub: Stub) -> None:
    await create_job(stub, "j")
    first = (await stub.MarkSubmitted(pb.MarkSubmittedRequest(job_id="j", external_id="rp-1"))).job
    again = (await stub.MarkSubmitted(pb.MarkSubmittedRequest(job_id="j", external_id="rp-1"))).job

    assert [(j.status, j.external_id, j.version) for j in (first, again)] == [
        (pb.JOB_STATUS_PROCESSING, "rp-1", 2),
        (pb.JOB_STATUS_PROCESSING, "rp-1", 2),
    ]
    assert await history(stub, "j") == [("SUBMITTED", 2)]


async def test_mark_submitted_never_replaces_a_recorded_external_id(stub: Stub) -> None:
    # Whoever could replace it would steer the owner's cancel (and the reconciler) to another
    # RunPod job.
    await create_job(stub, "j")
    recorded = await stub.MarkSubmitted(pb.MarkSubmittedRequest(job_id="j", external_id="rp-1"))
    other = stub.MarkSubmitted(pb.MarkSubmittedRequest(job_id="j", external_id="rp-2"))
    code, details = await rpc_error(other)

    assert (code, "external_id" in details) == (PRECONDITION, True), details
    assert "rp-1" not in details  # the recorded id is not told to whoever tried
    assert await get(stub, "j") == recorded.job
    assert await history(stub, "j") == [("SUBMITTED", 2)]


async def test_report_progress_before_submission_moves_to_processing(stub: Stub) -> None:
    await create_job(stub, "j")
    job = (await stub.ReportProgress(pb.ReportProgressRequest(job_id="j", progress=0))).job
    submitted = await stub.MarkSubmitted(pb.MarkSubmittedRequest(job_id="j", external_id="rp"))
    assert [(job.status, job.version), (submitted.job.status, submitted.job.version)] == [
        (pb.JOB_STATUS_PROCESSING, 2),
        (pb.JOB_STATUS_PROCESSING, 3),
    ]
    assert submitted.job.external_id == "rp"


async def test_report_progress_never_moves_backwards(stub: Stub) -> None:
    await create_job(stub, "j")

    async def report(progress: float, message: str = "") -> tuple[float, str, int]:
        request = pb.ReportProgressRequest(job_id="j", progress=progress, message=message)
        job = (await stub.ReportProgress(request)).job
        return job.progress, job.message, job.version

    log = [
        await report(40, "rendering"),
        await report(10, "older"),  # lower: OK, ignored, no new version
        await report(40),  # changes nothing
        await report(40, "rendering"),  # changes nothing
        await report(40, "muxing"),  # message only
        await report(55.5),  # empty message keeps the current one
        await report(100),
    ]

    assert log == [
        (40.0, "rendering", 2),
        (40.0, "rendering", 2),
        (40.0, "rendering", 2),
        (40.0, "rendering", 2),
        (40.0, "muxing", 3),
        (55.5, "muxing", 4),
        (100.0, "muxing", 5),
    ]
    assert await history(stub, "j") == [("PROGRESS", v) for v in (2, 3, 4, 5)]
    assert (await get(stub, "j")).status == pb.JOB_STATUS_PROCESSING  # 100% is not complete


async def test_complete_job(stub: Stub) -> None:
    await create_job(stub, "j")
    await stub.ReportProgress(pb.ReportProgressRequest(job_id="j", progress=30, message="m"))
    done = (await stub.CompleteJob(pb.CompleteJobRequest(job_id="j", output_key="exports/j"))).job
    again = (await stub.CompleteJob(pb.CompleteJobRequest(job_id="j", output_key="exports/j"))).job
    code, details = await rpc_error(
        stub.CompleteJob(pb.CompleteJobRequest(job_id="j", output_key="exports/other"))
    )

    assert (done.status, done.progress, done.output_key, done.version) == (
        pb.JOB_STATUS_COMPLETE,
        100.0,
        "exports/j",
        3,
    )
    assert done.HasField("completed_at") and done.completed_at == done.updated_at
    assert again == done
    assert (code, "output_key" in details) == (PRECONDITION, True)
    assert await get(stub, "j") == done
    assert await history(stub, "j") == [("PROGRESS", 2), ("COMPLETE", 3)]


async def test_fail_job_restated_is_ok_and_contradicted_is_failed_precondition(stub: Stub) -> None:
    await create_job(stub, "j")
    failed = (await stub.FailJob(pb.FailJobRequest(job_id="j", error="ffmpeg exited 1"))).job
    again = (await stub.FailJob(pb.FailJobRequest(job_id="j", error="ffmpeg exited 1"))).job
    codes = [
        (await rpc_error(stub.CancelJob(pb.CancelJobRequest(job_id="j"))))[0],
        (await rpc_error(stub.CompleteJob(pb.CompleteJobRequest(job_id="j", output_key="k"))))[0],
    ]
    assert (failed.status, failed.error, failed.version) == (
        pb.JOB_STATUS_ERROR,
        "ffmpeg exited 1",
        2,
    )
    assert failed.HasField("completed_at")
    assert (again, codes) == (failed, [PRECONDITION, PRECONDITION])
    assert await history(stub, "j") == [("ERROR", 2)]


async def test_cancel_job_restated_is_ok_and_contradicted_is_failed_precondition(
    stub: Stub,
) -> None:
    await create_job(stub, "j")
    await stub.MarkSubmitted(pb.MarkSubmittedRequest(job_id="j", external_id="rp"))
    cancelled = (await stub.CancelJob(pb.CancelJobRequest(job_id="j", reason="user asked"))).job
    again = (await stub.CancelJob(pb.CancelJobRequest(job_id="j", reason="user asked"))).job
    codes = [
        (await rpc_error(stub.FailJob(pb.FailJobRequest(job_id="j", error="e"))))[0],
        (await rpc_error(stub.ReportProgress(pb.ReportProgressRequest(job_id="j", progress=50))))[
            0
        ],
    ]
    assert (cancelled.status, cancelled.error, cancelled.version) == (
        pb.JOB_STATUS_CANCELLED,
        "user asked",
        3,
    )
    assert (again, codes) == (cancelled, [PRECONDITION, PRECONDITION])
    assert await history(stub, "j") == [("SUBMITTED", 2), ("CANCELLED", 3)]


FINISH = {
    "complete": ("CompleteJob", pb.CompleteJobRequest(job_id="j", output_key="exports/a")),
    "error": ("FailJob", pb.FailJobRequest(job_id="j", error="boom")),
    "cancelled": ("CancelJob", pb.CancelJobRequest(job_id="j", reason="stop")),
}
AFTER = {
    "submit": ("MarkSubmitted", pb.MarkSubmittedRequest(job_id="j", external_id="rp-late")),
    "progress up": ("ReportProgress", pb.ReportProgressRequest(job_id="j", progress=60)),
    "progress down": ("ReportProgress", pb.ReportProgressRequest(job_id="j", progress=10)),
    "complete same": ("CompleteJob", pb.CompleteJobRequest(job_id="j", output_key="exports/a")),
    "complete other": ("CompleteJob", pb.CompleteJobRequest(job_id="j", output_key="exports/b")),
    "fail": ("FailJob", pb.FailJobRequest(job_id="j", error="boom")),
    "cancel": ("CancelJob", pb.CancelJobRequest(job_id="j", reason="stop")),
}
# What each RPC answers once the job is finished: a restatement is OK, anything else is
# FAILED_PRECONDITION (a lower progress is always accepted and ignored).
FINISHED_TABLE = {
    "complete": dict.fromkeys(AFTER, PRECONDITION)
    | {"progress up": OK, "progress down": OK, "complete same": OK},
    "error": dict.fromkeys(AFTER, PRECONDITION) | {"progress down": OK, "fail": OK},
    "cancelled": dict.fromkeys(AFTER, PRECONDITION) | {"progress down": OK, "cancel": OK},
}


@pytest.mark.parametrize("finish", list(FINISH))
async def test_changes_to_a_finished_job(sqlite_stub: Stub, finish: str) -> None:
    stub = sqlite_stub
    await create_job(stub, "j")
    await stub.ReportProgress(pb.ReportProgressRequest(job_id="j", progress=50))
    method, request = FINISH[finish]
    finished = (await getattr(stub, method)(request)).job

    outcome: dict[str, grpc.StatusCode] = {}
    for name, (method, request) in AFTER.items():
        try:
            job = (await getattr(stub, method)(request)).job
        except grpc.aio.AioRpcError as exc:
            outcome[name] = exc.code()
            assert "already" in (exc.details() or ""), exc.details()
        else:
            outcome[name] = OK
            assert job == finished  # OK means: restated, nothing changed
    assert outcome == FINISHED_TABLE[finish]
    assert await get(stub, "j") == finished


async def test_every_accepted_change_is_one_event_in_history(stub: Stub) -> None:
    await create_job(stub, "j")
    # grpc.aio starts a call when it is made: make each only after the previous answered.
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: stub.ReportProgress(pb.ReportProgressRequest(job_id="j", progress=5)),
        lambda: stub.MarkSubmitted(pb.MarkSubmittedRequest(job_id="j", external_id="rp")),
        lambda: stub.MarkSubmitted(pb.MarkSubmittedRequest(job_id="j", external_id="rp")),
        lambda: stub.ReportProgress(
            pb.ReportProgressRequest(job_id="j", progress=50, message="half")
        ),
        lambda: stub.ReportProgress(pb.ReportProgressRequest(job_id="j", progress=20)),
        lambda: stub.CompleteJob(pb.CompleteJobRequest(job_id="j", output_key="exports/j")),
        lambda: stub.CompleteJob(pb.CompleteJobRequest(job_id="j", output_key="exports/j")),
    ]
    versions = [(await call()).job.version for call in calls]
    assert versions == [2, 3, 3, 4, 4, 5, 5]
    assert await history(stub, "j") == [
        ("PROGRESS", 2),
        ("SUBMITTED", 3),
        ("PROGRESS", 4),
        ("COMPLETE", 5),
    ]


# --- INVALID_ARGUMENT -----------------------------------------------------------------------


def _big_params(size: int) -> Struct:
    return struct({"p": "x" * (size - len('{"p":""}'))})


INVALID_CASES: list[tuple[str, Any, str]] = [
    ("CreateJob", pb.CreateJobRequest(job_id="a b", user_id="u"), "job_id"),
    ("CreateJob", pb.CreateJobRequest(job_id="j" * 129, user_id="u"), "job_id"),
    ("CreateJob", pb.CreateJobRequest(job_id="ü", user_id="u"), "job_id"),
    ("CreateJob", pb.CreateJobRequest(job_id="j", user_id=""), "user_id"),
    ("CreateJob", pb.CreateJobRequest(job_id="j", user_id="u" * 257), "user_id"),
    ("CreateJob", pb.CreateJobRequest(job_id="j", user_id="u", kind="k" * 65), "kind"),
    (
        "CreateJob",
        pb.CreateJobRequest(job_id="j", user_id="u", idempotency_key="i" * 129),
        "idempotency_key",
    ),
    (
        "CreateJob",
        pb.CreateJobRequest(job_id="j", user_id="u", params=_big_params(64 * 1024 + 1)),
        "params",
    ),
    ("GetJob", pb.GetJobRequest(job_id=""), "job_id"),
    ("GetJob", pb.GetJobRequest(job_id="../etc"), "job_id"),
    ("MarkSubmitted", pb.MarkSubmittedRequest(job_id="j", external_id=""), "external_id"),
    ("MarkSubmitted", pb.MarkSubmittedRequest(job_id="j", external_id="e" * 257), "external_id"),
    ("MarkSubmitted", pb.MarkSubmittedRequest(job_id="", external_id="e"), "job_id"),
    ("ReportProgress", pb.ReportProgressRequest(job_id="j", progress=math.nan), "progress"),
    ("ReportProgress", pb.ReportProgressRequest(job_id="j", progress=math.inf), "progress"),
    ("ReportProgress", pb.ReportProgressRequest(job_id="j", progress=-math.inf), "progress"),
    ("ReportProgress", pb.ReportProgressRequest(job_id="j", progress=-1), "progress"),
    ("ReportProgress", pb.ReportProgressRequest(job_id="j", progress=100.5), "progress"),
    (
        "ReportProgress",
        pb.ReportProgressRequest(job_id="j", progress=1, message="m" * 1025),
        "message",
    ),
    ("ReportProgress", pb.ReportProgressRequest(job_id="j!", progress=1), "job_id"),
    ("CompleteJob", pb.CompleteJobRequest(job_id="j", output_key=""), "output_key"),
    ("CompleteJob", pb.CompleteJobRequest(job_id="j", output_key="k" * 1025), "output_key"),
    ("FailJob", pb.FailJobRequest(job_id="j", error="e" * 4097), "error"),
    ("FailJob", pb.FailJobRequest(job_id="j j", error="e"), "job_id"),
    ("CancelJob", pb.CancelJobRequest(job_id="j", reason="r" * 4097), "reason"),
    ("CancelJob", pb.CancelJobRequest(job_id="", reason="r"), "job_id"),
]


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    INVALID_CASES,
    ids=[f"{m}-{f}-{i}" for i, (m, _, f) in enumerate(INVALID_CASES)],
)
async def test_invalid_argument_names_the_field(
    sqlite_stub: Stub, method: str, request_: Any, field: str
) -> None:
    await create_job(sqlite_stub, "j", user_id="u")
    before = await get(sqlite_stub, "j")

    code, details = await rpc_error(getattr(sqlite_stub, method)(request_))

    assert (code, field in details) == (INVALID, True), details
    assert await get(sqlite_stub, "j") == before  # nothing changed


async def test_watch_invalid_and_missing_job(sqlite_stub: Stub) -> None:
    async def watch_error(job_id: str) -> tuple[grpc.StatusCode, str]:
        call = sqlite_stub.WatchJob(pb.WatchJobRequest(job_id=job_id))
        return await rpc_error(call.read())

    invalid, missing = await watch_error("a b"), await watch_error("nope")
    assert (invalid[0], "job_id" in invalid[1]) == (INVALID, True)
    assert (missing[0], "nope" in missing[1]) == (NOT_FOUND, True)


async def test_params_at_the_limit_pass_through_unchanged(sqlite_stub: Stub) -> None:
    params = _big_params(64 * 1024)
    job = await create_job(sqlite_stub, "big", params=params)
    assert job.params == params
    assert (await get(sqlite_stub, "big")).params == params


def _nested(levels: int) -> dict[str, Any]:
    """params `levels` objects deep (the outer object is level 1)."""
    params: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        params = {"n": params}
    return params


async def test_params_nested_deeper_than_the_service_can_return_are_refused(
    stub: Stub,
) -> None:
    # Once stored, params must come back: ListJobs of every user must not break on one job.
    deep = _nested(wire.MAX_PARAMS_DEPTH + 1)
    code, details = await rpc_error(create_job(stub, "deep", params=struct(deep)))
    assert (code, "nested" in details) == (INVALID, True), (code, details)
    fine = _nested(wire.MAX_PARAMS_DEPTH)
    await create_job(stub, "fine", params=struct(fine))
    page = await stub.ListJobs(pb.ListJobsRequest())
    assert [job.job_id for job in page.jobs] == ["fine"]
    assert json_format.MessageToDict(page.jobs[0].params) == fine


@pytest.mark.parametrize("value", [math.nan, math.inf], ids=repr)
async def test_params_with_non_finite_numbers_are_invalid_argument(
    sqlite_stub: Stub, value: float
) -> None:
    # A Struct can carry NaN/inf; JSON cannot. The caller must hear INVALID_ARGUMENT naming
    # params, not INTERNAL.
    code, details = await rpc_error(
        create_job(sqlite_stub, "j", params=struct({"fps": 30, "bad": value}))
    )
    assert (code, "params" in details) == (INVALID, True), (code, details)


# --- UNAVAILABLE, auth, health, reflection ------------------------------------------------


async def test_store_unreachable_is_unavailable(
    postgres_url: str, start: ServerFactory, connect: ChannelFactory
) -> None:
    running = await start(postgres_url)
    stub = pb_grpc.JobStateServiceStub(connect(running.port))
    await create_job(stub, "j")
    await drop_database(postgres_url)

    results = [
        await rpc_error(get(stub, "j")),
        await rpc_error(stub.ReportProgress(pb.ReportProgressRequest(job_id="j", progress=1))),
        await rpc_error(create_job(stub, "k")),
    ]
    assert [code for code, _ in results] == [grpc.StatusCode.UNAVAILABLE] * 3
    assert all("unavailable" in details for _, details in results), results


async def test_api_token_guards_every_rpc_but_health(
    start: ServerFactory, connect: ChannelFactory, sqlite_url: str
) -> None:
    running = await start(sqlite_url, api_token="s3cret")
    channel = connect(running.port)
    stub = pb_grpc.JobStateServiceStub(channel)
    good = (("authorization", "Bearer s3cret"),)
    bad = (("authorization", "Bearer wrong"),)

    await stub.CreateJob(pb.CreateJobRequest(job_id="j", user_id="u"), metadata=good)
    codes = [
        (await rpc_error(stub.GetJob(pb.GetJobRequest(job_id="j"))))[0],
        (await rpc_error(stub.GetJob(pb.GetJobRequest(job_id="j"), metadata=bad)))[0],
        (await rpc_error(stub.WatchJob(pb.WatchJobRequest(job_id="j")).read()))[0],
        (await rpc_error(stub.CreateJob(pb.CreateJobRequest(job_id="k", user_id="u"))))[0],
    ]
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 4
    assert (await stub.GetJob(pb.GetJobRequest(job_id="j"), metadata=good)).job.version == 1
    watch = stub.WatchJob(pb.WatchJobRequest(job_id="j"), metadata=good)
    first = await watch.read()
    assert isinstance(first, pb.WatchJobResponse)
    assert first.type == pb.EVENT_TYPE_SNAPSHOT
    watch.cancel()
    health = health_pb2_grpc.HealthStub(channel)
    # types-grpcio-health-checking declares HealthStub without its methods.
    answer = await health.Check(  # type: ignore[attr-defined]
        health_pb2.HealthCheckRequest(service=SERVICE)
    )
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    assert (await rpc_error(get(stub, "k")))[0] == grpc.StatusCode.UNAUTHENTICATED


async def test_health_is_served(sqlite_server: RunningServer, connect: ChannelFactory) -> None:
    health = health_pb2_grpc.HealthStub(connect(sqlite_server.port))
    # types-grpcio-health-checking declares HealthStub without its methods.
    check = health.Check  # type: ignore[attr-defined]
    statuses = [
        (await check(health_pb2.HealthCheckRequest(service=name))).status for name in ("", SERVICE)
    ]
    assert statuses == [health_pb2.HealthCheckResponse.SERVING] * 2
    code, _ = await rpc_error(check(health_pb2.HealthCheckRequest(service="nope.Service")))
    assert code == NOT_FOUND


async def test_reflection_is_served(sqlite_server: RunningServer, connect: ChannelFactory) -> None:
    # types-grpcio-reflection types ServerReflectionStub for sync channels only, and its
    # ServerReflectionInfo as an unresolved `Incomplete`.
    channel = connect(sqlite_server.port)
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)  # type: ignore[arg-type]
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
    ]
    info = reflection.ServerReflectionInfo(iter(requests))  # type: ignore[operator]
    answers = [answer async for answer in info]

    services = {s.name for s in answers[0].list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= services
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in answers[1].file_descriptor_response.file_descriptor_proto
    ]
    ours = next(f for f in files if f.name == "jobstate/v1/jobstate.proto")
    methods = {m.name for s in ours.service for m in s.method}
    assert methods == {
        "CreateJob",
        "GetJob",
        "ListJobs",
        "MarkSubmitted",
        "ReportProgress",
        "CompleteJob",
        "FailJob",
        "CancelJob",
        "WatchJob",
        "ApplyChanges",
        "FollowJobs",
        "WatchJobs",
    }


# --- more contract corners ------------------------------------------------------------------


async def test_list_jobs_page_size_is_capped_at_500(sqlite_stub: Stub) -> None:
    await asyncio.gather(*(create_job(sqlite_stub, f"j{i:03d}") for i in range(501)))
    page = await sqlite_stub.ListJobs(pb.ListJobsRequest(user_id="u1", page_size=10_000))
    rest = await sqlite_stub.ListJobs(
        pb.ListJobsRequest(user_id="u1", page_size=10_000, page_token=page.next_page_token)
    )
    assert (len(page.jobs), bool(page.next_page_token)) == (500, True)
    assert (len(rest.jobs), rest.next_page_token) == (1, "")
    assert len({j.job_id for j in [*page.jobs, *rest.jobs]}) == 501


# (RPC name, request, domain change type, the request fields that make the change)
Op = Callable[
    [str, random.Random],
    tuple[str, Message, Callable[..., domain.Change], str | tuple[str, ...]],
]
OPS: dict[str, Op] = {
    "submit": lambda job_id, rng: (
        "MarkSubmitted",
        pb.MarkSubmittedRequest(job_id=job_id, external_id=rng.choice(["rp-1", "rp-2"])),
        domain.Submit,
        "external_id",
    ),
    "progress": lambda job_id, rng: (
        "ReportProgress",
        pb.ReportProgressRequest(
            job_id=job_id,
            progress=rng.choice([0.0, 10.0, 10.0, 50.0, 99.5, 100.0, 150.0]),
            message=rng.choice(["", "a", "b"]),
        ),
        domain.Progress,
        ("progress", "message"),
    ),
    "complete": lambda job_id, rng: (
        "CompleteJob",
        pb.CompleteJobRequest(job_id=job_id, output_key=rng.choice(["k1", "k2", ""])),
        domain.Complete,
        "output_key",
    ),
    "fail": lambda job_id, rng: (
        "FailJob",
        pb.FailJobRequest(job_id=job_id, error=rng.choice(["", "boom"])),
        domain.Fail,
        "error",
    ),
    "cancel": lambda job_id, rng: (
        "CancelJob",
        pb.CancelJobRequest(job_id=job_id, reason="stop"),
        domain.Cancel,
        "reason",
    ),
}
MODEL_CODES = {
    domain_errors.InvalidArgument: INVALID,
    domain_errors.FailedPrecondition: PRECONDITION,
}


@pytest.mark.parametrize("seed", range(3))
async def test_random_rpc_sequences_follow_the_state_machine(stub: Stub, seed: int) -> None:
    """The server, RPC after RPC, agrees with the pure state machine on every outcome."""
    rng = random.Random(seed)
    model: dict[str, domain.Job] = {}

    async def new(job_id: str) -> None:
        assert (await create_job(stub, job_id)).version == 1
        model[job_id] = domain.new_job(job_id, "u1", "overlay", {}, T0).job

    for job_id in ("a", "b"):
        await new(job_id)
    log_server, log_model = [], []
    for step in range(80):
        open_jobs = [j for j, job in model.items() if not job.status.terminal]
        if not open_jobs or rng.random() < 0.05:
            await new(f"n{step}")
            continue
        # Mostly jobs still open (where most of the state machine is); sometimes finished ones.
        job_id = rng.choice(open_jobs if rng.random() < 0.8 else list(model))
        op = rng.choices(list(OPS), weights=[2, 6, 1, 1, 1])[0]
        method, request, change_type, fields = OPS[op](job_id, rng)
        names = fields if isinstance(fields, tuple) else (fields,)
        change = change_type(*(getattr(request, n) for n in names))
        try:
            event = domain.apply(model[job_id], change, T0)
        except (domain_errors.InvalidArgument, domain_errors.FailedPrecondition) as exc:
            expected: tuple[object, ...] = (MODEL_CODES[type(exc)],)
        else:
            if event is not None:
                model[job_id] = event.job
            job = model[job_id]
            expected = (OK, job.status.value, job.progress, job.message, job.version)
        try:
            got = (await getattr(stub, method)(request)).job
        except grpc.aio.AioRpcError as exc:
            actual: tuple[object, ...] = (exc.code(),)
        else:
            status = pb.JobStatus.Name(got.status).removeprefix("JOB_STATUS_").lower()
            actual = (OK, status, got.progress, got.message, got.version)
        log_model.append((method, job_id, *expected))
        log_server.append((method, job_id, *actual))
    assert log_server == log_model
    stored = {job_id: (await get(stub, job_id)) for job_id in model}
    assert {j: (s.version, s.progress, s.external_id, s.output_key) for j, s in stored.items()} == {
        j: (m.version, m.progress, m.external_id, m.output_key) for j, m in model.items()
    }
    outcomes = {entry[2] for entry in log_model}
    assert outcomes == {OK, INVALID, PRECONDITION}  # the sequence reached every kind of answer


T0 = datetime(2026, 1, 1, tzinfo=UTC)
