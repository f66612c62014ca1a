"""The gateway's JSON: strict JSON in, and jobs and watch events out.

Jobs and events arrive as `jobstate.domain` records (from `jobstate.client`) and become the
JSON shapes of DESIGN.md's gateway contract here and nowhere else; times are UTC ISO-8601 with
milliseconds and a `Z`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TypeGuard
from urllib.parse import quote

from jobstate.client import EventType, Job, JobEvent, Status

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
    escaped = b"\\u" in body if isinstance(body, bytes) else "\\u" in body
    if escaped or not body.isascii():  # else no surrogate can be in it
        for item, _ in _nodes(value):
            if isinstance(item, str) and _SURROGATE.search(item):
                raise InvalidJSON("a string holds an unpaired surrogate")
    return value


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite JSON number (booleans are not numbers here)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def output_url(output_key: str) -> str:
    return "/api/storage/presigned-url?key=" + quote(output_key, safe="")


def job_json(job: Job) -> dict[str, Any]:
    """The `GET /api/jobs/{id}` shape."""
    return {
        "job_id": job.job_id,
        "kind": job.kind,
        "status": job.status.value,
        "progress": job.progress,
        "message": job.message,
        "output_key": job.output_key,
        "error": job.error,
        "version": job.version,
        "created_at": _time(job.created_at),
        "updated_at": _time(job.updated_at),
        "completed_at": _time(job.completed_at),
    }


def status_message(job: Job) -> dict[str, Any]:
    """The WebSocket `status` message: the whole job, plus output_url when complete."""
    message = {"type": "status", **job_json(job)}
    if job.status is Status.COMPLETE:
        message["output_url"] = output_url(job.output_key)
    return message


def event_message(event: JobEvent) -> dict[str, Any]:
    """The WebSocket message for one watch event (exactly one message per event)."""
    job = event.job
    base = {"job_id": job.job_id, "version": job.version}
    status = job.status.value
    match event.type:
        case EventType.PROGRESS:
            return {
                "type": "progress",
                **base,
                "status": status,
                "progress": job.progress,
                "message": job.message,
            }
        case EventType.COMPLETE:
            return {
                "type": "complete",
                **base,
                "status": status,
                "progress": job.progress,
                "output_key": job.output_key,
                "output_url": output_url(job.output_key),
            }
        case EventType.ERROR:
            return {"type": "error", **base, "status": status, "error": job.error}
        case EventType.CANCELLED:
            return {"type": "cancelled", **base, "status": status, "error": job.error}
    # SNAPSHOT, CREATED and SUBMITTED: a status message.
    return status_message(job)
