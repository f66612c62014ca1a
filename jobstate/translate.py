"""Domain records ↔ protobuf messages, both ways: the servicer sends with it, the client reads.

Protobuf never travels further than this module, the servicer and the client. It imports
only the pure domain and the generated messages, so the client needs no database library.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from jobstate.domain import EventType, Job, JobEvent, Status, validate_params
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


def _timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def job_to_pb(job: Job) -> pb.Job:
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
        created_at=message.created_at.ToDatetime(tzinfo=UTC),
        updated_at=message.updated_at.ToDatetime(tzinfo=UTC),
        completed_at=(
            message.completed_at.ToDatetime(tzinfo=UTC)
            if message.HasField("completed_at")
            else None
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


def statuses_from_pb(values: Iterable[pb.JobStatus]) -> tuple[Status, ...]:
    try:
        return tuple(STATUS_FROM_PB[value] for value in values)
    except KeyError as exc:
        raise InvalidArgument(f"statuses contains an unknown status {exc.args[0]}") from None


def datetime_from_pb(value: Timestamp, name: str) -> datetime:
    try:
        return value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(f"{name} is not a valid timestamp") from None
