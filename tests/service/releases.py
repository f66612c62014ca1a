"""For the migration tests: databases as earlier releases left them (release 0.1.0's tables,
frozen here, since `schema` follows head), and `jobstate` commands run to their end."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

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
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from jobstate import migrate

from .conftest import JOBSTATE, PROCESS_WAIT

HEAD = migrate.head()
THIS_RELEASE = (str(JOBSTATE),)
LISTEN = ("--listen", "127.0.0.1:0")


# The tables as release 0.1.0 created them (metadata.create_all): (user_id, idempotency_key)
# indexed, not unique. Frozen here: `schema` follows head.
V010 = MetaData()
V010_JOBS = Table(
    "jobs",
    V010,
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
    Index("ix_jobs_user_idempotency", "user_id", "idempotency_key"),
)
V010_EVENTS = Table(
    "job_events",
    V010,
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


def job_row(
    job_id: str, user_id: str = "u1", key: str | None = None, **fields: Any
) -> dict[str, Any]:
    created = fields.pop("created_at", datetime(2026, 11, 1, tzinfo=UTC))
    row = {
        "job_id": job_id,
        "user_id": user_id,
        "kind": "overlay",
        "status": "pending",
        "progress": 0.0,
        "message": "",
        "output_key": "",
        "error": "",
        "version": 1,
        "params": {"clip": job_id},
        "external_id": "",
        "idempotency_key": key,
        "created_at": created,
        "updated_at": created,
        "completed_at": None,
    }
    return row | fields


def event_row(job: dict[str, Any], version: int, type_: str, **fields: Any) -> dict[str, Any]:
    state = job | fields
    return {
        "job_id": job["job_id"],
        "version": version,
        "type": type_,
        "at": job["created_at"] + timedelta(minutes=version),
        **{name: state[name] for name in ("status", "progress", "message", "output_key")},
        **{name: state[name] for name in ("error", "external_id")},
    }


@asynccontextmanager
async def connection(url: str) -> AsyncIterator[AsyncConnection]:
    """One connection in one committed transaction (SQLite's file is created if missing)."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            yield conn
    finally:
        await engine.dispose()


async def versions(url: str) -> list[str]:
    """alembic_version's rows, or ["none"] without that table."""
    async with connection(url) as conn:
        if "alembic_version" not in await conn.run_sync(lambda c: inspect(c).get_table_names()):
            return ["none"]
        return list((await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars())


async def table_names(url: str) -> set[str]:
    async with connection(url) as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def keys_of(url: str) -> dict[str, str | None]:
    async with connection(url) as conn:
        rows = await conn.execute(select(V010_JOBS.c.job_id, V010_JOBS.c.idempotency_key))
        return {job_id: key for job_id, key in rows}


def environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSTATE_")}
    return env | {"ENVIRONMENT": "development", **extra}


async def jobstate(
    *args: str, program: tuple[str, ...] = THIS_RELEASE, **env: str
) -> tuple[int, list[str], list[str]]:
    """Run a `jobstate` command to its end: exit code, stdout lines, stderr lines."""
    proc = await asyncio.create_subprocess_exec(
        *program,
        *args,
        env=environ(**env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), PROCESS_WAIT)
    assert proc.returncode is not None
    return proc.returncode, out.decode().splitlines(), err.decode().splitlines()


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def where(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def schema_messages(lines: list[str]) -> list[str]:
    """What a `jobstate serve` logged about the schema (its log lines are JSON objects)."""
    messages = [json.loads(line)["msg"] for line in lines if line.startswith("{")]
    return [message for message in messages if message.startswith("database schema: ")]


# Three jobs of u1 share the key "dup" (two gateways' starts reached two replicas of 0.1.0).
def duplicate_keys() -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        job_row("a-oldest", "u1", "dup", created_at=now - timedelta(hours=3)),
        job_row("c-newest", "u1", "dup", created_at=now - timedelta(hours=1)),
        job_row("b-middle", "u1", "dup", created_at=now - timedelta(hours=2)),
        job_row("solo", "u1", "solo", created_at=now - timedelta(hours=2)),
        job_row("theirs", "u2", "dup", created_at=now - timedelta(hours=3)),
        job_row("keyless", "u1", None, created_at=now - timedelta(hours=3)),
    ]


async def make_v010_database(url: str) -> None:
    async with connection(url) as conn:
        await conn.run_sync(V010.create_all)
        await conn.execute(insert(V010_JOBS), duplicate_keys())


KEYS_BEFORE = {
    "a-oldest": "dup",
    "b-middle": "dup",
    "c-newest": "dup",
    "solo": "solo",
    "theirs": "dup",
    "keyless": None,
}
# The newest job keeps its key; the others give it up; everything else stays as it was.
KEYS_AFTER = KEYS_BEFORE | {"a-oldest": None, "b-middle": None}
