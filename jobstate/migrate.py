"""Creates the schema, or brings a database made by an earlier release up to it.

Runs in one transaction whenever a store opens; on PostgreSQL under an advisory lock, so
replicas starting together take turns and each finds the work done or does all of it. Every
step looks at what the database has, so running it again changes nothing.
"""

from __future__ import annotations

from sqlalchemy import Connection, and_, exists, inspect, or_, text, update

from jobstate.schema import jobs, metadata

_SCHEMA_LOCK = 0x6A6F6273  # "jobs": an arbitrary, fixed advisory lock key
_UNIQUE_KEYS = next(index for index in jobs.indexes if index.name == "ux_jobs_user_idempotency")


def ensure_schema(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
    metadata.create_all(conn, checkfirst=True)
    _unique_idempotency_keys(conn)


def _unique_idempotency_keys(conn: Connection) -> None:
    """Release 0.1.0 indexed (user_id, idempotency_key) without UNIQUE, so two replicas could
    each make a job for one key: the newest such job keeps the key, the others give it up."""
    if _UNIQUE_KEYS.name in {index["name"] for index in inspect(conn).get_indexes("jobs")}:
        return
    newer = jobs.alias("newer")
    conn.execute(
        update(jobs)
        .where(
            jobs.c.idempotency_key.is_not(None),
            exists().where(
                newer.c.user_id == jobs.c.user_id,
                newer.c.idempotency_key == jobs.c.idempotency_key,
                or_(
                    newer.c.created_at > jobs.c.created_at,
                    and_(newer.c.created_at == jobs.c.created_at, newer.c.job_id > jobs.c.job_id),
                ),
            ),
        )
        .values(idempotency_key=None)
    )
    conn.execute(text("DROP INDEX IF EXISTS ix_jobs_user_idempotency"))
    _UNIQUE_KEYS.create(conn)
