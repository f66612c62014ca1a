"""Per-test PostgreSQL databases on the server named by JOBSTATE_TEST_POSTGRES_URL."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import URL, make_url

ENV = "JOBSTATE_TEST_POSTGRES_URL"


def admin_url() -> URL:
    raw = os.environ.get(ENV, "")
    if not raw:
        pytest.skip(f"{ENV} is not set: these tests need a PostgreSQL server (.ci/run sets it)")
    return make_url(raw)


def _dsn(url: URL, database: str | None = None) -> str:
    return url.set(drivername="postgresql", database=database or url.database).render_as_string(
        hide_password=False
    )


@asynccontextmanager
async def scratch_database(prefix: str = "jobstate_test") -> AsyncIterator[URL]:
    """CREATE a database of this test's own, yield its SQLAlchemy URL, DROP it (FORCE) after."""
    url = admin_url()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(_dsn(url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield url.set(database=name)
    finally:
        conn = await asyncpg.connect(_dsn(url))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@asynccontextmanager
async def database_url(
    backend: str, directory: Path, prefix: str = "jobstate_test"
) -> AsyncIterator[str]:
    """A URL for `backend`: "sqlite" (a file in `directory`) or "postgres" (a scratch database)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / 'jobstate.db'}"
        return
    async with scratch_database(prefix) as url:
        yield url.render_as_string(hide_password=False)
