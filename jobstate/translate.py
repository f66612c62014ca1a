"""Domain records ↔ protobuf messages. Protobuf never travels further than this and the servicer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from jobstate.domain import EventType, Job, Status
from jobstate.errors import InvalidArgument
from jobstate.service import Snapshot, WatchItem
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
    EventType.CREATED: pb.EVENT_TYPE_CREATED,
    EventType.SUBMITTED: pb.EVENT_TYPE_SUBMITTED,
    EventType.PROGRESS: pb.EVENT_TYPE_PROGRESS,
    EventType.COMPLETE: pb.EVENT_TYPE_COMPLETE,
    EventType.ERROR: pb.EVENT_TYPE_ERROR,
    EventType.CANCELLED: pb.EVENT_TYPE_CANCELLED,
}


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


def watch_item_to_pb(item: WatchItem) -> pb.WatchJobResponse:
    kind = pb.EVENT_TYPE_SNAPSHOT if isinstance(item, Snapshot) else EVENT_TO_PB[item.type]
    return pb.WatchJobResponse(type=kind, job=job_to_pb(item.job))


def params_from_pb(params: Struct) -> dict[str, Any]:
    try:
        return json_format.MessageToDict(params)
    except ValueError as exc:  # NaN and infinities have no JSON form
        raise InvalidArgument(f"params must hold only finite numbers: {exc}") from None


def statuses_from_pb(values: Any) -> tuple[Status, ...]:
    try:
        return tuple(STATUS_FROM_PB[value] for value in values)
    except KeyError as exc:
        raise InvalidArgument(f"statuses contains an unknown status {exc.args[0]}") from None


def datetime_from_pb(value: Timestamp, name: str) -> datetime:
    try:
        return value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(f"{name} is not a valid timestamp") from None
