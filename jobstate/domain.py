"""The job state machine and every validation rule: pure, no I/O.

`apply(job, change, now)` is the only way a job changes. It returns the next job and the
event type, or None when the change restates the current state (no new version), and raises
`InvalidArgument` / `FailedPrecondition` naming the state and the attempted change.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from jobstate.errors import FailedPrecondition, InvalidArgument
from jobstate.wire import (
    JOB_ID_PATTERN,
    JOB_ID_RE,
    MAX_ERROR,
    MAX_EXTERNAL_ID,
    MAX_IDEMPOTENCY_KEY,
    MAX_KIND,
    MAX_MESSAGE,
    MAX_OUTPUT_KEY,
    MAX_PARAMS_BYTES,
    MAX_PARAMS_DEPTH,
    MAX_USER_ID,
    nesting_depth,
)


class Status(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETE = "complete"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.COMPLETE, Status.ERROR, Status.CANCELLED})


class EventType(StrEnum):
    # Never stored: a watcher's first message when history cannot be replayed (the job as it
    # is now, standing for every version up to its own).
    SNAPSHOT = "snapshot"
    CREATED = "created"
    SUBMITTED = "submitted"
    PROGRESS = "progress"
    COMPLETE = "complete"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def changes_status(self) -> bool:
        """Events a slow watcher may never skip (only PROGRESS can be coalesced)."""
        return self is not EventType.PROGRESS


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    user_id: str
    kind: str
    status: Status
    progress: float
    message: str
    output_key: str
    error: str
    version: int
    params: dict[str, Any]
    external_id: str
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    idempotency_key: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One entry of a job's history: the job as it was right after the change."""

    type: EventType
    job: Job

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def version(self) -> int:
        return self.job.version


@dataclass(frozen=True, slots=True)
class InitialStateComplete:
    """Ends the initial state of a watch of a user's jobs (WatchJobs): every event before it
    was the state when the watch (re)opened, every later one is live. `truncated`: more jobs
    matched than the initial state holds; `unknown_job_ids`: resumed jobs that do not exist or
    are not the user's."""

    truncated: bool
    unknown_job_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Submit:
    external_id: str


@dataclass(frozen=True, slots=True)
class Progress:
    progress: float
    message: str = ""


@dataclass(frozen=True, slots=True)
class Complete:
    output_key: str


@dataclass(frozen=True, slots=True)
class Fail:
    error: str


@dataclass(frozen=True, slots=True)
class Cancel:
    reason: str = ""


Change = Submit | Progress | Complete | Fail | Cancel


# --- validation -------------------------------------------------------------------------


def validate_job_id(job_id: str) -> str:
    if not job_id:
        raise InvalidArgument("job_id is required")
    if not JOB_ID_RE.fullmatch(job_id):
        raise InvalidArgument(f"job_id must match {JOB_ID_PATTERN}")
    return job_id


def _text(name: str, value: str, limit: int, *, required: bool = False) -> str:
    if required and not value:
        raise InvalidArgument(f"{name} is required")
    if len(value) > limit:
        raise InvalidArgument(f"{name} is longer than {limit} characters")
    if "\x00" in value:
        raise InvalidArgument(f"{name} must not contain NUL characters")
    return value


def validate_user_id(user_id: str) -> str:
    return _text("user_id", user_id, MAX_USER_ID, required=True)


def validate_progress(progress: float) -> float:
    if isinstance(progress, bool) or not isinstance(progress, int | float):
        raise InvalidArgument("progress must be a number")
    if not math.isfinite(progress) or not 0 <= progress <= 100:
        raise InvalidArgument("progress must be a finite number between 0 and 100")
    return float(progress)


def validate_params(params: dict[str, Any]) -> dict[str, Any]:
    try:
        size = len(json.dumps(params, separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"params must be plain JSON with finite numbers: {exc}") from None
    if size > MAX_PARAMS_BYTES:
        raise InvalidArgument(f"params is {size} bytes as JSON; the limit is {MAX_PARAMS_BYTES}")
    if nesting_depth(params) > MAX_PARAMS_DEPTH:
        raise InvalidArgument(
            f"params are nested too deeply (at most {MAX_PARAMS_DEPTH} levels of objects "
            "and arrays)"
        )
    return params


def validate_new_job(
    job_id: str, user_id: str, kind: str, params: dict[str, Any], idempotency_key: str = ""
) -> None:
    validate_job_id(job_id)
    validate_user_id(user_id)
    _text("kind", kind, MAX_KIND)
    _text("idempotency_key", idempotency_key, MAX_IDEMPOTENCY_KEY)
    validate_params(params)


def validate_change(change: Change) -> None:
    match change:
        case Submit(external_id):
            _text("external_id", external_id, MAX_EXTERNAL_ID, required=True)
        case Progress(progress, message):
            validate_progress(progress)
            _text("message", message, MAX_MESSAGE)
        case Complete(output_key):
            _text("output_key", output_key, MAX_OUTPUT_KEY, required=True)
        case Fail(error):
            _text("error", error, MAX_ERROR)
        case Cancel(reason):
            _text("reason", reason, MAX_ERROR)


# --- the state machine ------------------------------------------------------------------


def new_job(
    job_id: str,
    user_id: str,
    kind: str,
    params: dict[str, Any],
    now: datetime,
    idempotency_key: str = "",
) -> JobEvent:
    """The CREATED event of a new job at version 1 (validated)."""
    validate_new_job(job_id, user_id, kind, params, idempotency_key)
    job = Job(
        job_id=job_id,
        user_id=user_id,
        kind=kind,
        status=Status.PENDING,
        progress=0.0,
        message="",
        output_key="",
        error="",
        version=1,
        params=params,
        external_id="",
        created_at=now,
        updated_at=now,
        idempotency_key=idempotency_key,
    )
    return JobEvent(EventType.CREATED, job)


def _finished(job: Job, attempted: str) -> FailedPrecondition:
    return FailedPrecondition(f"job {job.job_id} is already {job.status}; cannot {attempted}")


def apply(job: Job, change: Change, now: datetime) -> JobEvent | None:
    """Apply one change: the next event, or None when nothing changes (no new version).

    Raises InvalidArgument for a malformed change and FailedPrecondition for a change that
    contradicts a finished job.
    """
    validate_change(change)
    match change:
        case Submit(external_id):
            if job.status.terminal:
                raise _finished(job, "mark it submitted")
            if job.external_id == external_id:
                return None
            if job.external_id:
                # Replacing it would point the owner's cancel and the reconciler at another
                # worker job; the recorded id is not named, the caller may be the one forging.
                raise FailedPrecondition(
                    f"job {job.job_id} is {job.status} with another external_id recorded; "
                    "it is never replaced"
                )
            return _next(
                job, EventType.SUBMITTED, now, status=Status.PROCESSING, external_id=external_id
            )
        case Progress(progress, message):
            # Out-of-order delivery: an older report is accepted and ignored, message included.
            if progress < job.progress:
                return None
            unchanged = progress == job.progress and message in ("", job.message)
            if unchanged and job.status is not Status.PENDING:
                return None
            if job.status.terminal:
                raise _finished(job, "report progress")
            return _next(
                job,
                EventType.PROGRESS,
                now,
                status=Status.PROCESSING,
                progress=progress,
                message=message or job.message,
            )
        case Complete(output_key):
            if job.status is Status.COMPLETE and job.output_key == output_key:
                return None
            if job.status is Status.COMPLETE:
                raise FailedPrecondition(
                    f"job {job.job_id} already completed with a different output_key"
                )
            if job.status.terminal:
                raise _finished(job, "complete it")
            return _next(
                job,
                EventType.COMPLETE,
                now,
                status=Status.COMPLETE,
                progress=100.0,
                output_key=output_key,
                completed_at=now,
            )
        case Fail(error):
            if job.status is Status.ERROR:
                return None
            if job.status.terminal:
                raise _finished(job, "fail it")
            return _next(
                job, EventType.ERROR, now, status=Status.ERROR, error=error, completed_at=now
            )
        case Cancel(reason):
            if job.status is Status.CANCELLED:
                return None
            if job.status.terminal:
                raise _finished(job, "cancel it")
            return _next(
                job,
                EventType.CANCELLED,
                now,
                status=Status.CANCELLED,
                error=reason,
                completed_at=now,
            )
    raise InvalidArgument(f"unknown change {change!r}")


def _next(job: Job, type_: EventType, now: datetime, **changes: Any) -> JobEvent:
    return JobEvent(type_, replace(job, version=job.version + 1, updated_at=now, **changes))
