"""The store's reads: rows to domain records, one job with its history, pages of jobs.

Plain synchronous SQLAlchemy Core on a `Connection` (see `database`), for both engines.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, overload

from sqlalchemy import Connection, and_, bindparam, or_, select

from jobstate.domain import TERMINAL, EventType, Job, JobEvent, Status
from jobstate.errors import InvalidArgument
from jobstate.schema import job_events, jobs

# The fields a change may alter: stored on the job and on each of its events.
MUTABLE = ("status", "progress", "message", "output_key", "error", "external_id")

# Built once: the hot paths bind values instead of building a statement per call.
_JOB = select(jobs).where(jobs.c.job_id == bindparam("job_id"))
_EVENTS = (
    select(job_events)
    .where(
        job_events.c.job_id == bindparam("job_id"),
        job_events.c.version > bindparam("after"),
        job_events.c.version <= bindparam("upto"),
    )
    .order_by(job_events.c.version)
)


@overload
def _utc(value: datetime) -> datetime: ...
@overload
def _utc(value: datetime | None) -> datetime | None: ...
def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands DateTime back naive; everything stored is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def job_from_row(row: Any) -> Job:
    return Job(
        job_id=row.job_id,
        user_id=row.user_id,
        kind=row.kind,
        status=Status(row.status),
        progress=row.progress,
        message=row.message,
        output_key=row.output_key,
        error=row.error,
        version=row.version,
        params=row.params,
        external_id=row.external_id,
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
        completed_at=_utc(row.completed_at),
        idempotency_key=row.idempotency_key or "",
    )


def select_job(conn: Connection, job_id: str) -> Job | None:
    row = conn.execute(_JOB, {"job_id": job_id}).first()
    return None if row is None else job_from_row(row)


def _event_from_row(job: Job, row: Any) -> JobEvent:
    status = Status(row.status)
    at = _utc(row.at)
    state = replace(
        job,
        **{name: getattr(row, name) for name in MUTABLE if name != "status"},
        status=status,
        version=row.version,
        updated_at=at,
        completed_at=at if status in TERMINAL else None,
    )
    return JobEvent(EventType(row.type), state)


def select_with_events(
    conn: Connection, job_id: str, after: int
) -> tuple[Job | None, list[JobEvent]]:
    job = select_job(conn, job_id)
    if job is None or after >= job.version:
        return job, []
    rows = conn.execute(_EVENTS, {"job_id": job_id, "after": after, "upto": job.version}).all()
    return job, [_event_from_row(job, row) for row in rows]


def encode_page_token(job: Job) -> str:
    raw = json.dumps([job.created_at.isoformat(), job.job_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created, job_id = json.loads(raw)
        return datetime.fromisoformat(created), str(job_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidArgument("page_token is not a token this service issued") from None


@dataclass(frozen=True, slots=True)
class JobQuery:
    user_id: str = ""
    statuses: tuple[Status, ...] = ()
    updated_before: datetime | None = None
    page_size: int = 50
    page_token: str = ""
    output_key: str = ""
    idempotency_key: str = ""
    created_after: datetime | None = None


def select_page(conn: Connection, query: JobQuery) -> tuple[list[Job], str]:
    """Jobs matching `query`, newest first, and the token of the next page ("" if none)."""
    stmt = select(jobs)
    if query.user_id:
        stmt = stmt.where(jobs.c.user_id == query.user_id)
    if query.statuses:
        stmt = stmt.where(jobs.c.status.in_([s.value for s in query.statuses]))
    if query.updated_before is not None:
        stmt = stmt.where(jobs.c.updated_at < query.updated_before)
    if query.output_key:
        stmt = stmt.where(jobs.c.output_key == query.output_key)
    if query.idempotency_key:
        stmt = stmt.where(jobs.c.idempotency_key == query.idempotency_key)
    if query.created_after is not None:
        stmt = stmt.where(jobs.c.created_at >= query.created_after)
    if query.page_token:
        created, job_id = decode_page_token(query.page_token)
        stmt = stmt.where(
            or_(
                jobs.c.created_at < created,
                and_(jobs.c.created_at == created, jobs.c.job_id < job_id),
            )
        )
    stmt = stmt.order_by(jobs.c.created_at.desc(), jobs.c.job_id.desc())
    rows = conn.execute(stmt.limit(query.page_size + 1)).all()
    page = [job_from_row(row) for row in rows[: query.page_size]]
    token = encode_page_token(page[-1]) if len(rows) > query.page_size else ""
    return page, token
