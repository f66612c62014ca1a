"""ApplyChanges: many changes in one call, each answered as its unary RPC would answer it."""

from __future__ import annotations

from typing import TypeAlias

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

from .conftest import create_job, history, rpc_error

Stub: TypeAlias = "pb_grpc.JobStateServiceAsyncStub"
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def progress(job_id: str, value: float, message: str = "") -> pb.JobChange:
    request = pb.ReportProgressRequest(job_id=job_id, progress=value, message=message)
    return pb.JobChange(report_progress=request)


def complete(job_id: str, key: str) -> pb.JobChange:
    return pb.JobChange(complete_job=pb.CompleteJobRequest(job_id=job_id, output_key=key))


def cancel(job_id: str) -> pb.JobChange:
    return pb.JobChange(cancel_job=pb.CancelJobRequest(job_id=job_id, reason="stop"))


def submitted(job_id: str, external_id: str) -> pb.JobChange:
    request = pb.MarkSubmittedRequest(job_id=job_id, external_id=external_id)
    return pb.JobChange(mark_submitted=request)


CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def outcomes(response: pb.ApplyChangesResponse) -> list[tuple[str, int, str]]:
    """(code name, version, status name) per result; version/status 0 for failures."""
    return [
        (CODE_NAMES[r.code], r.job.version, pb.JobStatus.Name(r.job.status))
        for r in response.results
    ]


async def test_each_change_is_answered_as_its_unary_rpc_would(stub: Stub) -> None:
    for job_id in ("a", "b", "done"):
        await create_job(stub, job_id)
    await stub.CancelJob(pb.CancelJobRequest(job_id="done"))
    response = await stub.ApplyChanges(
        pb.ApplyChangesRequest(
            changes=[
                progress("a", 10),
                submitted("b", "rp-1"),
                progress("missing", 5),
                progress("a", 101),
                progress("done", 50),
                cancel("done"),
                complete("b", "exports/b/out.mp4"),
            ]
        )
    )
    assert outcomes(response) == [
        ("OK", 2, "JOB_STATUS_PROCESSING"),
        ("OK", 2, "JOB_STATUS_PROCESSING"),
        ("NOT_FOUND", 0, "JOB_STATUS_UNSPECIFIED"),
        ("INVALID_ARGUMENT", 0, "JOB_STATUS_UNSPECIFIED"),
        ("FAILED_PRECONDITION", 0, "JOB_STATUS_UNSPECIFIED"),
        ("OK", 2, "JOB_STATUS_CANCELLED"),  # a restatement: no new version
        ("OK", 3, "JOB_STATUS_COMPLETE"),
    ]
    messages = [r.message for r in response.results]
    assert ("missing" in messages[2], "progress" in messages[3], messages[0]) == (True, True, "")
    assert (await stub.GetJob(pb.GetJobRequest(job_id="done"))).job.version == 2


async def test_changes_to_one_job_apply_in_the_order_given(stub: Stub) -> None:
    await create_job(stub, "j")
    changes = [progress("j", p) for p in (10, 20, 30)] + [complete("j", "exports/j/o.mp4")]
    response = await stub.ApplyChanges(pb.ApplyChangesRequest(changes=changes))
    assert [(r.job.version, r.job.progress) for r in response.results] == [
        (2, 10),
        (3, 20),
        (4, 30),
        (5, 100),
    ]
    assert await history(stub, "j") == [
        ("PROGRESS", 2),
        ("PROGRESS", 3),
        ("PROGRESS", 4),
        ("COMPLETE", 5),
    ]


async def test_a_read_mask_sends_only_the_fields_named(stub: Stub) -> None:
    await create_job(stub, "m")
    mask = FieldMask(paths=["job_id", "status", "version"])
    response = await stub.ApplyChanges(
        pb.ApplyChangesRequest(changes=[progress("m", 40, "rendering")], read_mask=mask)
    )
    job = response.results[0].job
    assert (job.job_id, job.status, job.version) == ("m", pb.JOB_STATUS_PROCESSING, 2)
    assert (job.user_id, job.message, job.progress, job.HasField("updated_at")) == (
        "",
        "",
        0.0,
        False,
    )


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        (pb.ApplyChangesRequest(changes=[progress("x", 1)] * 1001), "1000"),
        (pb.ApplyChangesRequest(changes=[progress("x", 1), pb.JobChange()]), "change"),
        (
            pb.ApplyChangesRequest(
                changes=[progress("x", 1)], read_mask=FieldMask(paths=["status", "nope"])
            ),
            "nope",
        ),
    ],
    ids=["too-many", "empty-change", "unknown-mask-path"],
)
async def test_a_request_that_cannot_be_taken_changes_nothing(
    stub: Stub, request_: pb.ApplyChangesRequest, named: str
) -> None:
    await create_job(stub, "x")
    code, details = await rpc_error(stub.ApplyChanges(request_))
    assert (code, named in details) == (INVALID, True), (code, details)
    assert (await stub.GetJob(pb.GetJobRequest(job_id="x"))).job.version == 1


async def test_an_empty_request_is_answered_with_no_results(stub: Stub) -> None:
    response = await stub.ApplyChanges(pb.ApplyChangesRequest())
    assert list(response.results) == []
