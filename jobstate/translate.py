"""Domain records ↔ protobuf messages, both ways: the servicer sends with it, the client reads.

Protobuf never travels further than this module, the servicer and the client. It imports
only the pure domain and the generated messages, so the client needs no database library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from jobstate.domain import (
    Cancel,
    Change,
    Complete,
    EventType,
    Fail,
    Job,
    JobEvent,
    Progress,
    Status,
    Submit,
    validate_params,
)
from jobstate.errors import InvalidArgument
from jobstate.v1 import jobstate_pb2 as pb

STATUS_TO_PB = {
    Status.PENDING: pb.JOB_STATUS_PENDING,
    Status.PROCESSING: pb.JOB_STATUS_PROCESSING,
    Status.COMPLETE: pb.JOB_STATUS_COMPLETE,
    Status.ERROR: pb.JOB_STATUS_ERROR,
    Status.CANCELLED: pb.JOB_STATUS_CANCELLED,
}
STATUS_FROM_PB = {value: key for key, value in STATUS_TO_PB.items()}
EVENT_TO_PB = {
    EventType.SNAPSHOT: pb.EVENT_TYPE_SNAPSHOT,
    EventType.CREATED: pb.EVENT_TYPE_CREATED,
    EventType.SUBMITTED: pb.EVENT_TYPE_SUBMITTED,
    EventType.PROGRESS: pb.EVENT_TYPE_PROGRESS,
    EventType.COMPLETE: pb.EVENT_TYPE_COMPLETE,
    EventType.ERROR: pb.EVENT_TYPE_ERROR,
    EventType.CANCELLED: pb.EVENT_TYPE_CANCELLED,
}
EVENT_FROM_PB = {value: key for key, value in EVENT_TO_PB.items()}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _timestamp(value: datetime) -> Timestamp:
    # NOTE: Timestamp.FromDatetime goes through calendar.timegm; this is ~3x cheaper, on a
    # path every response and event takes (a test holds it equal to protobuf's own).
    micros = (value - _EPOCH) // _MICROSECOND
    return Timestamp(seconds=micros // 1_000_000, nanos=micros % 1_000_000 * 1000)


def _datetime(value: Timestamp) -> datetime:
    return _EPOCH + timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


# Job fields a read_mask may name (AIP-157), with how each is read off a record; params and
# the timestamps are set apart below because they are messages. A mask names fields by name,
# so a partial Job is built from keyword arguments; their types differ field by field (Any).
_SCALARS: dict[str, Callable[[Job], Any]] = {
    "job_id": lambda job: job.job_id,
    "user_id": lambda job: job.user_id,
    "kind": lambda job: job.kind,
    "status": lambda job: STATUS_TO_PB[job.status],
    "progress": lambda job: job.progress,
    "message": lambda job: job.message,
    "output_key": lambda job: job.output_key,
    "error": lambda job: job.error,
    "version": lambda job: job.version,
    "external_id": lambda job: job.external_id,
}
_TIMES = ("created_at", "updated_at", "completed_at")
JOB_FIELDS = frozenset((*_SCALARS, "params", *_TIMES))
Fields = frozenset[str] | None  # None: every field


def fields_from_mask(mask: FieldMask) -> Fields:
    """The Job fields a read_mask names (None when it names none: every field);
    InvalidArgument naming a path that is not a Job field."""
    if not mask.paths:
        return None
    unknown = sorted(set(mask.paths) - JOB_FIELDS)
    if unknown:
        raise InvalidArgument(f"read_mask names fields Job does not have: {', '.join(unknown)}")
    return frozenset(mask.paths)


def job_to_pb(job: Job, fields: Fields = None) -> pb.Job:
    """The job as a message; only `fields` when given (a partial response)."""
    if fields is not None:
        return _partial_job(job, fields)
    message = pb.Job(
        job_id=job.job_id,
        user_id=job.user_id,
        kind=job.kind,
        status=STATUS_TO_PB[job.status],
        progress=job.progress,
        message=job.message,
        output_key=job.output_key,
        error=job.error,
        version=job.version,
        external_id=job.external_id,
        created_at=_timestamp(job.created_at),
        updated_at=_timestamp(job.updated_at),
    )
    if job.params:
        message.params.update(job.params)
    if job.completed_at is not None:
        message.completed_at.CopyFrom(_timestamp(job.completed_at))
    return message


def _partial_job(job: Job, fields: frozenset[str]) -> pb.Job:
    message = pb.Job(**{name: read(job) for name, read in _SCALARS.items() if name in fields})
    if "params" in fields and job.params:
        message.params.update(job.params)
    for name in _TIMES:
        value = getattr(job, name)
        if name in fields and value is not None:
            getattr(message, name).CopyFrom(_timestamp(value))
    return message


def event_to_pb(event: JobEvent) -> pb.WatchJobResponse:
    return pb.WatchJobResponse(type=EVENT_TO_PB[event.type], job=job_to_pb(event.job))


def job_from_pb(message: pb.Job) -> Job:
    """A job as the service sent it. A status this release does not know (a newer server)
    raises InvalidArgument rather than passing an unknown value on."""
    try:
        status = STATUS_FROM_PB[message.status]
    except KeyError:
        raise InvalidArgument(f"the service sent an unknown job status {message.status}") from None
    return Job(
        job_id=message.job_id,
        user_id=message.user_id,
        kind=message.kind,
        status=status,
        progress=message.progress,
        message=message.message,
        output_key=message.output_key,
        error=message.error,
        version=message.version,
        params=json_format.MessageToDict(message.params) if message.params.fields else {},
        external_id=message.external_id,
        created_at=_datetime(message.created_at),
        updated_at=_datetime(message.updated_at),
        completed_at=(
            _datetime(message.completed_at) if message.HasField("completed_at") else None
        ),
    )


def event_from_pb(message: pb.WatchJobResponse) -> JobEvent:
    # An event type newer than this release still carries the job: show it as a snapshot.
    kind = EVENT_FROM_PB.get(message.type, EventType.SNAPSHOT)
    return JobEvent(kind, job_from_pb(message.job))


def params_from_pb(params: Struct) -> dict[str, Any]:
    try:
        return json_format.MessageToDict(params)
    except ValueError as exc:  # NaN and infinities have no JSON form
        raise InvalidArgument(f"params must hold only finite numbers: {exc}") from None


def params_to_pb(params: dict[str, Any]) -> Struct:
    """`params` as a Struct; InvalidArgument for what the service would refuse (over 64 KiB,
    nested deeper than MAX_PARAMS_DEPTH, not JSON) or a Struct cannot hold (an integer beyond
    a double)."""
    validate_params(params)
    struct = Struct()
    try:
        json_format.ParseDict(params, struct)
    except OverflowError:  # an integer beyond a double's range: JSON allows it, Struct cannot
        raise InvalidArgument("params hold a number too large for a double") from None
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise InvalidArgument(f"params cannot be sent: {exc}") from None
    return struct


def change_from_pb(message: pb.JobChange) -> tuple[str, Change]:
    """(job_id, the change) of one ApplyChanges change; InvalidArgument when none is set."""
    match message.WhichOneof("change"):
        case "mark_submitted":
            submitted = message.mark_submitted
            return submitted.job_id, Submit(submitted.external_id)
        case "report_progress":
            progress = message.report_progress
            return progress.job_id, Progress(progress.progress, progress.message)
        case "complete_job":
            complete = message.complete_job
            return complete.job_id, Complete(complete.output_key)
        case "fail_job":
            return message.fail_job.job_id, Fail(message.fail_job.error)
        case "cancel_job":
            return message.cancel_job.job_id, Cancel(message.cancel_job.reason)
    raise InvalidArgument("every change must set one of its kinds (report_progress, ...)")


def change_to_pb(job_id: str, change: Change) -> pb.JobChange:
    match change:
        case Submit(external_id):
            return pb.JobChange(
                mark_submitted=pb.MarkSubmittedRequest(job_id=job_id, external_id=external_id)
            )
        case Progress(progress, message):
            request = pb.ReportProgressRequest(job_id=job_id, progress=progress, message=message)
            return pb.JobChange(report_progress=request)
        case Complete(output_key):
            complete = pb.CompleteJobRequest(job_id=job_id, output_key=output_key)
            return pb.JobChange(complete_job=complete)
        case Fail(error):
            return pb.JobChange(fail_job=pb.FailJobRequest(job_id=job_id, error=error))
        case Cancel(reason):
            return pb.JobChange(cancel_job=pb.CancelJobRequest(job_id=job_id, reason=reason))
    raise InvalidArgument(f"unknown change {change!r}")


def statuses_from_pb(values: Iterable[pb.JobStatus.ValueType]) -> tuple[Status, ...]:
    try:
        return tuple(STATUS_FROM_PB[value] for value in values)
    except KeyError as exc:
        raise InvalidArgument(f"statuses contains an unknown status {exc.args[0]}") from None


def datetime_from_pb(value: Timestamp, name: str) -> datetime:
    try:
        return value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(f"{name} is not a valid timestamp") from None
