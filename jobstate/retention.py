"""Retention (a store helper): trims job history and removes finished jobs in slices.

A pass asks a reader which jobs still have something to remove (one set-based query per page
of `SLICE` jobs, keyset-paged by job id) and removes it with one statement per page, each page
its own short write transaction. So on SQLite, whose one writer also serves group commit, a
write waits for at most one slice, never for the whole pass; and jobs with nothing left to
remove (finished and compacted, or already trimmed) cost a read, not a write.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, case, delete, exists, select

from jobstate.database import Database
from jobstate.domain import EventType
from jobstate.schema import job_events, jobs

SLICE = 100  # jobs per write transaction: at most SLICE x the progress cap rows deleted

_PROGRESS = job_events.c.type == EventType.PROGRESS.value


def _last_doomed_version(finished_before: datetime, keep_progress: int) -> ColumnElement[Any]:
    """Per job, the highest version whose PROGRESS event goes: every one of a job that finished
    before the cutoff, else all but those of its latest `keep_progress` versions."""
    finished = and_(jobs.c.completed_at.is_not(None), jobs.c.completed_at < finished_before)
    return case((finished, jobs.c.version), else_=jobs.c.version - keep_progress)


def _to_compact(
    conn: Connection, after: str, finished_before: datetime, keep_progress: int
) -> list[str]:
    last = _last_doomed_version(finished_before, keep_progress)
    doomed = exists().where(
        job_events.c.job_id == jobs.c.job_id, _PROGRESS, job_events.c.version <= last
    )
    query = (
        select(jobs.c.job_id)
        .where(jobs.c.job_id > after, last > 0, doomed)
        .order_by(jobs.c.job_id)
        .limit(SLICE)
    )
    return list(conn.scalars(query))


def _compact_slice(
    conn: Connection, job_ids: list[str], finished_before: datetime, keep_progress: int
) -> int:
    # The limit is computed again from the row as it is now, not as the reader saw it.
    last = (
        select(_last_doomed_version(finished_before, keep_progress))
        .where(jobs.c.job_id == job_events.c.job_id)
        .scalar_subquery()
    )
    statement = delete(job_events).where(
        job_events.c.job_id.in_(job_ids), _PROGRESS, job_events.c.version <= last
    )
    return conn.execute(statement).rowcount


def _finished_before(cutoff: datetime) -> ColumnElement[bool]:
    return and_(jobs.c.completed_at.is_not(None), jobs.c.completed_at < cutoff)


def _to_purge(conn: Connection, after: str, finished_before: datetime) -> list[str]:
    query = (
        select(jobs.c.job_id)
        .where(jobs.c.job_id > after, _finished_before(finished_before))
        .order_by(jobs.c.job_id)
        .limit(SLICE)
    )
    return list(conn.scalars(query))


def _purge_slice(conn: Connection, job_ids: list[str], finished_before: datetime) -> int:
    gone = select(jobs.c.job_id).where(
        jobs.c.job_id.in_(job_ids), _finished_before(finished_before)
    )
    conn.execute(delete(job_events).where(job_events.c.job_id.in_(gone)))
    finished = _finished_before(finished_before)
    return conn.execute(delete(jobs).where(jobs.c.job_id.in_(job_ids), finished)).rowcount


async def _in_slices(
    db: Database, find: Callable[..., list[str]], remove: Callable[..., int], *args: Any
) -> int:
    removed, after = 0, ""
    while True:
        job_ids = await db.read(find, after, *args)
        if job_ids:
            removed += await db.write(remove, job_ids, *args)
        if len(job_ids) < SLICE:
            return removed
        after = job_ids[-1]


async def compact(db: Database, finished_before: datetime, keep_progress: int) -> int:
    """Drop PROGRESS events of jobs finished before the cutoff, and bound every job's to those
    of its latest `keep_progress` versions. Returns the number of events removed."""
    return await _in_slices(db, _to_compact, _compact_slice, finished_before, keep_progress)


async def purge(db: Database, finished_before: datetime) -> int:
    """Remove jobs finished before the cutoff with their history. Returns the jobs removed."""
    return await _in_slices(db, _to_purge, _purge_slice, finished_before)
