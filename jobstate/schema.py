"""Table definitions (SQLAlchemy Core). Only the store uses them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String(128), primary_key=True),
    Column("user_id", String(256), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("progress", Float, nullable=False),
    Column("message", Text, nullable=False),
    Column("output_key", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("params", JSON, nullable=False),
    Column("external_id", String(256), nullable=False),
    Column("idempotency_key", String(128), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Index("ix_jobs_user_created", "user_id", "created_at", "job_id"),
    Index("ix_jobs_status_updated", "status", "updated_at"),
    # One job per (user, key): the database, not a process, makes a keyed CreateJob idempotent.
    # NULL keys (no key, or one given up after 24 h) are distinct on SQLite and PostgreSQL alike.
    Index("ux_jobs_user_idempotency", "user_id", "idempotency_key", unique=True),
)

# One row per version of a job: its mutable fields right after the change. The static fields
# (user, kind, params, created_at) live only in `jobs`.
job_events = Table(
    "job_events",
    metadata,
    Column("job_id", String(128), primary_key=True),
    Column("version", BigInteger, primary_key=True),
    Column("type", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("progress", Float, nullable=False),
    Column("message", Text, nullable=False),
    Column("output_key", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("external_id", String(256), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)
