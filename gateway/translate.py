"""Between protobuf and the gateway's JSON: the only module that knows both.

One table maps gRPC status codes to HTTP statuses; jobs and watch events become the JSON
shapes of DESIGN.md's gateway contract here and nowhere else.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import grpc
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.errors import BadRequest
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.wire import MAX_PARAMS_DEPTH, nesting_depth

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 503,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    # The service refused our JOBSTATE_API_TOKEN: the gateway is misconfigured, which the
    # caller can only wait out, like an outage (the client logs it, naming the variable).
    grpc.StatusCode.UNAUTHENTICATED: 503,
}

# Codes whose details are written for the person who made the request; others get a generic
# message so internals never leak.
_PASS_DETAILS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
_GENERIC = {
    404: "job not found",
    503: "the jobstate service is unavailable; try again shortly",
    500: "internal error",
}

STATUS_NAMES: dict[int, str] = {
    pb.JOB_STATUS_PENDING: "pending",
    pb.JOB_STATUS_PROCESSING: "processing",
    pb.JOB_STATUS_COMPLETE: "complete",
    pb.JOB_STATUS_ERROR: "error",
    pb.JOB_STATUS_CANCELLED: "cancelled",
}
STATUS_VALUES: dict[str, int] = {name: value for value, name in STATUS_NAMES.items()}
TERMINAL = frozenset({pb.JOB_STATUS_COMPLETE, pb.JOB_STATUS_ERROR, pb.JOB_STATUS_CANCELLED})


def http_error(code: grpc.StatusCode, details: str | None) -> tuple[int, str]:
    """The HTTP status and the `error` text for a failed RPC."""
    status = HTTP_STATUS.get(code, 500)
    if code in _PASS_DETAILS and details:
        return status, details
    return status, _GENERIC.get(status, "internal error")


# json turns an escaped pair into one code point; whatever is left in this range is unpaired.
_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidJSON(ValueError):
    """JSON that `json` parses (or recurses on) but the gateway refuses; says why."""


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _nodes(value: Any) -> Iterator[tuple[Any, int]]:
    """Every value inside `value` (itself at depth 1) with its depth, without recursion:
    parsed JSON can be nested far deeper than is safe to recurse on."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        yield item, depth
        if isinstance(item, dict):
            pending.extend((key, depth + 1) for key in item)
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)


def loads(body: bytes | str) -> Any:
    """Strict JSON (RFC 7493's I-JSON): NaN/Infinity are refused at parse time (ValueError);
    nesting the parser cannot recurse into and strings with an unpaired surrogate, which no
    protobuf string can hold, are refused with InvalidJSON."""
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidJSON("it is nested too deeply") from None
    escape = b"\\u" if isinstance(body, bytes) else "\\u"
    if escape in body or not body.isascii():  # else no surrogate can be in it
        for item, _ in _nodes(value):
            if isinstance(item, str) and _SURROGATE.search(item):
                raise InvalidJSON("a string holds an unpaired surrogate")
    return value


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def is_number(value: Any) -> bool:
    """A finite JSON number (booleans are not numbers here)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _time(ts: Timestamp, present: bool = True) -> str | None:
    if not present:
        return None
    return ts.ToDatetime().isoformat(timespec="milliseconds") + "Z"


def output_url(output_key: str) -> str:
    return "/api/storage/presigned-url?key=" + quote(output_key, safe="")


def job_json(job: pb.Job) -> dict[str, Any]:
    """The `GET /api/jobs/{id}` shape."""
    return {
        "job_id": job.job_id,
        "kind": job.kind,
        "status": STATUS_NAMES.get(job.status, "unknown"),
        "progress": job.progress,
        "message": job.message,
        "output_key": job.output_key,
        "error": job.error,
        "version": job.version,
        "created_at": _time(job.created_at),
        "updated_at": _time(job.updated_at),
        "completed_at": _time(job.completed_at, job.HasField("completed_at")),
    }


def params_struct(params: dict[str, Any]) -> Struct:
    """`params` as a protobuf Struct. BadRequest naming what protobuf cannot hold: nesting
    beyond MAX_PARAMS_DEPTH objects and arrays, an integer beyond a double's range."""
    if nesting_depth(params) > MAX_PARAMS_DEPTH:
        raise BadRequest(
            f"params are nested too deeply (at most {MAX_PARAMS_DEPTH} levels of objects "
            "and arrays)"
        )
    struct = Struct()
    try:
        json_format.ParseDict(params, struct)
    except OverflowError:
        raise BadRequest("params hold a number too large for a double") from None
    return struct


def status_message(job: pb.Job) -> dict[str, Any]:
    """The WebSocket `status` message: the whole job, plus output_url when complete."""
    message = {"type": "status", **job_json(job)}
    if job.status == pb.JOB_STATUS_COMPLETE:
        message["output_url"] = output_url(job.output_key)
    return message


def event_message(event_type: int, job: pb.Job) -> dict[str, Any]:
    """The WebSocket message for one WatchJob event (exactly one message per event)."""
    base = {"job_id": job.job_id, "version": job.version}
    status = STATUS_NAMES.get(job.status, "unknown")
    if event_type == pb.EVENT_TYPE_PROGRESS:
        return {
            "type": "progress",
            **base,
            "status": status,
            "progress": job.progress,
            "message": job.message,
        }
    if event_type == pb.EVENT_TYPE_COMPLETE:
        return {
            "type": "complete",
            **base,
            "status": status,
            "progress": job.progress,
            "output_key": job.output_key,
            "output_url": output_url(job.output_key),
        }
    if event_type == pb.EVENT_TYPE_ERROR:
        return {"type": "error", **base, "status": status, "error": job.error}
    if event_type == pb.EVENT_TYPE_CANCELLED:
        return {"type": "cancelled", **base, "status": status, "error": job.error}
    # SNAPSHOT, CREATED, SUBMITTED and anything newer than this gateway: a status message.
    return status_message(job)
