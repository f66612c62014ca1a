"""The job store: jobs and their event history, durable before anything is acknowledged.

A small interface in domain terms (create, get, list, update-with-expected-version,
events-after); only this module and its helpers import SQLAlchemy. Writes go through group
commit: each change is one version-checked UPDATE (or INSERT) plus one event row, many changes
to different jobs share a transaction, and each caller returns only after that commit.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from jobstate import domain, retention
from jobstate.database import Database, open_database
from jobstate.domain import TERMINAL, Change, EventType, Job, JobEvent, Status
from jobstate.errors import AlreadyExists, InvalidArgument, JobStateError, NotFound, Unavailable
from jobstate.groupcommit import GroupCommit
from jobstate.migrate import ensure_schema
from jobstate.schema import job_events, jobs
from jobstate.supervisor import Supervisor

MUTABLE = ("status", "progress", "message", "output_key", "error", "external_id")


@dataclass(frozen=True, slots=True)
class _Write:
    event: JobEvent
    expected_version: int | None  # None: create
    change: Change | None = None  # re-applied to fresh state if the version check fails
    keys_since: datetime | None = None  # create: keys of jobs created before this have lapsed


# What a write came to: the committed event; for a create, the job already in its way (or the
# domain error that says whose it is); for an update that lost its version check, the outcome
# of its change re-applied to fresh state (the committed event, the unchanged job, or the
# domain error it raised).
Outcome = JobEvent | Job | JobStateError


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands DateTime back naive; everything stored is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _job_from_row(row: Any) -> Job:
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
        created_at=_utc(row.created_at),  # type: ignore[arg-type]
        updated_at=_utc(row.updated_at),  # type: ignore[arg-type]
        completed_at=_utc(row.completed_at),
        idempotency_key=row.idempotency_key or "",
    )


def _job_values(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "user_id": job.user_id,
        "kind": job.kind,
        "params": job.params,
        "idempotency_key": job.idempotency_key or None,
        "created_at": job.created_at,
        **_mutable_values(job),
    }


def _mutable_values(job: Job) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(job, name) for name in MUTABLE}
    values["status"] = job.status.value
    values["version"] = job.version
    values["updated_at"] = job.updated_at
    values["completed_at"] = job.completed_at
    return values


def _event_values(event: JobEvent) -> dict[str, Any]:
    job = event.job
    values: dict[str, Any] = {name: getattr(job, name) for name in MUTABLE}
    values.update(
        job_id=job.job_id,
        version=job.version,
        type=event.type.value,
        status=job.status.value,
        at=job.updated_at,
    )
    return values


# Built once: the hot path binds values instead of building a statement per change.
_UPDATE_JOB = (
    update(jobs)
    .where(jobs.c.job_id == bindparam("w_job_id"), jobs.c.version == bindparam("w_expected"))
    .values({name: bindparam(name) for name in (*MUTABLE, "version", "updated_at", "completed_at")})
)


NOTIFY_CHANNEL = "jobstate_events"
_NOTIFY = text("SELECT pg_notify(:channel, p) FROM unnest(CAST(:payloads AS text[])) AS p")


def _insert_if_absent(dialect: str) -> Any:
    # No conflict target: a taken job id and a taken (user, idempotency key) both yield.
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(jobs).on_conflict_do_nothing()


def _update_params(write: _Write) -> dict[str, Any]:
    params = _mutable_values(write.event.job)
    params.update(w_job_id=write.event.job_id, w_expected=write.expected_version)
    return params


def _insert(conn: Connection, write: _Write) -> Outcome:
    """Insert the job, or find the job in its way: the user's with the same key, else the id's."""
    job = write.event.job
    key = job.idempotency_key
    if key:
        # A lapsed key is given up in this transaction, so the unique index admits the new job.
        conn.execute(
            update(jobs)
            .where(
                jobs.c.user_id == job.user_id,
                jobs.c.idempotency_key == key,
                jobs.c.created_at < write.keys_since,
            )
            .values(idempotency_key=None)
        )
    if conn.execute(_insert_if_absent(conn.dialect.name), _job_values(job)).rowcount == 1:
        return write.event
    if key:
        query = select(jobs).where(jobs.c.user_id == job.user_id, jobs.c.idempotency_key == key)
        if (row := conn.execute(query).first()) is not None:
            return _job_from_row(row)
    existing = _select_job(conn, job.job_id)
    if existing is None:  # the row in the way was removed meanwhile (retention)
        return Unavailable(f"job {job.job_id} changed concurrently; retry")
    if existing.user_id != job.user_id:
        return AlreadyExists(f"job_id {job.job_id} is already taken")
    return existing


def _apply_one(conn: Connection, write: _Write) -> Outcome:
    if write.expected_version is None:
        return _insert(conn, write)
    if conn.execute(_UPDATE_JOB, _update_params(write)).rowcount == 1:
        return write.event
    return _reapply(conn, write)


def _reapply(conn: Connection, write: _Write) -> Outcome:
    """Another writer won: lock the row, apply the change to what it holds now."""
    assert write.change is not None, "updates carry their change"
    query = select(jobs).where(jobs.c.job_id == write.event.job_id).with_for_update()
    row = conn.execute(query).first()
    if row is None:
        return NotFound(f"job {write.event.job_id} not found")
    current = _job_from_row(row)
    try:
        event = domain.apply(current, write.change, write.event.job.updated_at)
    except JobStateError as exc:
        return exc
    if event is None:
        return current
    conn.execute(_UPDATE_JOB, _update_params(_Write(event, current.version)))
    return event


def _apply_all(conn: Connection, writes: Sequence[_Write]) -> list[Outcome] | None:
    """Every update in one executemany: all won their version check, or None (undone)."""
    if any(write.expected_version is None for write in writes):
        return None
    savepoint = conn.begin_nested()
    if conn.execute(_UPDATE_JOB, [_update_params(w) for w in writes]).rowcount == len(writes):
        savepoint.commit()
        return [write.event for write in writes]
    savepoint.rollback()
    return None


def _lock_order(write: _Write) -> tuple[str, ...]:
    # A keyed create waits on the (user, key) entry of the unique index; everything else on
    # the job's row (a create never waits on an update: the row is not visible to it yet).
    # NOTE: two keyed creates that also share a client-chosen job id can still meet in
    # opposite orders; PostgreSQL then aborts one batch, which is answered UNAVAILABLE.
    job = write.event.job
    if write.expected_version is None and job.idempotency_key:
        return ("key", job.user_id, job.idempotency_key)
    return ("job", job.job_id)


def _write_batch(conn: Connection, writes: Sequence[_Write]) -> list[Outcome]:
    """One transaction for many changes; one outcome per write, in order."""
    # NOTE: on SQLite a statement costs Python work while holding the GIL, so a batch of
    # updates goes as one executemany; only when a version check failed (another process
    # wrote the same file) is it redone row by row.
    outcomes = None
    if len(writes) > 1 and conn.dialect.name == "sqlite":
        outcomes = _apply_all(conn, writes)
    if outcomes is None:
        # Rows are locked in one global order, so replicas' batches do not deadlock.
        order = sorted(range(len(writes)), key=lambda i: _lock_order(writes[i]))
        by_index = {i: _apply_one(conn, writes[i]) for i in order}
        outcomes = [by_index[i] for i in range(len(writes))]
    events = [_event_values(o) for o in outcomes if isinstance(o, JobEvent)]
    if events:
        conn.execute(insert(job_events), events)
        if conn.dialect.name == "postgresql":
            # Delivered at commit. Ids and versions only: payloads are capped at 8,000 bytes,
            # and listeners read the events themselves.
            payloads = [f"{event['job_id']}:{event['version']}" for event in events]
            conn.execute(_NOTIFY, {"channel": NOTIFY_CHANNEL, "payloads": payloads})
    return outcomes


def _select_job(conn: Connection, job_id: str) -> Job | None:
    row = conn.execute(select(jobs).where(jobs.c.job_id == job_id)).first()
    return None if row is None else _job_from_row(row)


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


def _select_with_events(conn: Connection, job_id: str, after: int) -> tuple[Job | None, list]:
    job = _select_job(conn, job_id)
    if job is None or after >= job.version:
        return job, []
    rows = conn.execute(
        select(job_events)
        .where(
            job_events.c.job_id == job_id,
            job_events.c.version > after,
            job_events.c.version <= job.version,
        )
        .order_by(job_events.c.version)
    ).all()
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


def _select_page(conn: Connection, query: JobQuery) -> tuple[list[Job], str]:
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
    page = [_job_from_row(row) for row in rows[: query.page_size]]
    token = encode_page_token(page[-1]) if len(rows) > query.page_size else ""
    return page, token


class Store:
    """Durable jobs and history. Every method raises `Unavailable` when the database fails.

    It keeps a small cache of jobs this process wrote, used only on the write path: a stale
    entry (another replica wrote the job) fails the version check, and the change is applied
    again to the stored row in the same transaction. A change that commits nothing meets no
    version check, so it is answered after `reread`.
    """

    def __init__(
        self, db: Database, supervisor: Supervisor | None = None, cache_size: int = 10_000
    ) -> None:
        self.db = db
        self._cache: OrderedDict[str, Job] = OrderedDict()
        self._cache_size = cache_size
        self._commits: GroupCommit[_Write, Outcome] = GroupCommit(
            self._run_batch, supervisor or Supervisor()
        )

    @classmethod
    async def open(
        cls, url: str, *, sqlite_synchronous: str = "NORMAL", supervisor: Supervisor | None = None
    ) -> Store:
        """Open (and create or upgrade) the store; its group-commit loop runs under
        `supervisor` (a private one if None)."""
        db = open_database(url, sqlite_synchronous=sqlite_synchronous)
        try:
            await db.write(ensure_schema)
        except Unavailable as exc:
            await db.close()
            where = make_url(url).render_as_string(hide_password=True)
            raise Unavailable(f"cannot open the job store {where}: {exc.cause}") from None
        except BaseException:
            await db.close()
            raise
        return cls(db, supervisor)

    async def close(self) -> None:
        await self._commits.close()
        await self.db.close()

    async def _run_batch(self, writes: list[_Write]) -> list[Outcome]:
        return await self.db.write(_write_batch, writes)

    def _remember(self, job: Job) -> None:
        self._cache[job.job_id] = job
        self._cache.move_to_end(job.job_id)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def create(self, event: JobEvent, keys_since: datetime) -> JobEvent | Job:
        """Insert a new job and its CREATED event, or return the job already in its way.

        That is the user's job with the same idempotency key (one created before `keys_since`
        has lapsed and gives the key up, in the same transaction), else the job with the same
        id. Raises AlreadyExists when that id is another user's, and Unavailable.
        """
        outcome = await self._commits.submit(_Write(event, None, keys_since=keys_since))
        if isinstance(outcome, JobStateError):
            raise outcome
        if isinstance(outcome, JobEvent):
            self._remember(outcome.job)
        return outcome

    async def update(
        self, event: JobEvent, expected_version: int, change: Change
    ) -> JobEvent | Job:
        """Commit `event` if the stored version is still `expected_version`.

        If another writer changed the job first, `change` is applied again to the stored job
        inside the same transaction, with the row locked: returns the event committed then,
        or the stored job when the change restates it; raises the domain error it raises.
        """
        outcome = await self._commits.submit(_Write(event, expected_version, change))
        if isinstance(outcome, JobStateError):
            self._cache.pop(event.job_id, None)
            raise outcome
        self._remember(outcome.job if isinstance(outcome, JobEvent) else outcome)
        return outcome

    async def get(self, job_id: str, *, cached: bool = False) -> Job | None:
        if cached and (job := self._cache.get(job_id)) is not None:
            return job
        job = await self.db.read(_select_job, job_id)
        if job is not None and cached:
            self._remember(job)
        return job

    async def reread(self, job: Job) -> Job | None:
        """`job` as the database holds it now, when another process may have changed it since
        this one read it; else `job` itself (this process's cache is then the truth)."""
        if not self.db.shared:
            return job
        current = await self.db.read(_select_job, job.job_id)
        if current is None:
            self._cache.pop(job.job_id, None)
        else:
            self._remember(current)
        return current

    async def get_with_events(self, job_id: str, after: int) -> tuple[Job | None, list[JobEvent]]:
        """The job and its history events with version > after, read in one transaction."""
        return await self.db.read(_select_with_events, job_id, after)

    async def list_jobs(self, query: JobQuery) -> tuple[list[Job], str]:
        return await self.db.read(_select_page, query)

    async def compact(self, finished_before: datetime, keep_progress: int) -> int:
        """Retention of history, in slices (see `retention`); the number of events removed."""
        return await retention.compact(self.db, finished_before, keep_progress)

    async def purge_jobs(self, finished_before: datetime) -> int:
        """Remove jobs finished before the cutoff, in slices; the number of jobs removed."""
        removed = await retention.purge(self.db, finished_before)
        self._cache.clear()
        return removed
