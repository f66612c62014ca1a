"""Runs store functions (plain synchronous SQLAlchemy Core code) against the database.

Store code is written once, against a synchronous `Connection`, and runs on both engines:
- SQLite: a synchronous engine in threads. One dedicated writer thread with one connection
  (`BEGIN IMMEDIATE`) queues all writes — SQLite's own lock wait is far slower than that
  queue — and a batch of changes costs one thread hop instead of one per statement.
- PostgreSQL: the asyncpg engine, the function run through `AsyncConnection.run_sync`.
Database failures become `Unavailable`; the detail is logged, not sent to clients.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from jobstate.errors import Unavailable

T = TypeVar("T")
P = ParamSpec("P")
# A store function: runs on a Connection inside a transaction, with the arguments given.
Work = Callable[Concatenate[Connection, P], T]

# Errors that mean "the store could not do it now", as opposed to a bug.
_STORE_ERRORS = (SQLAlchemyError, OSError, ConnectionError, asyncio.TimeoutError)


class Database:
    dialect: str
    # Whether other processes write the same database (a job read earlier may be stale).
    shared: bool

    async def write(self, fn: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        raise NotImplementedError

    async def read(self, fn: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


def open_database(url: str, *, sqlite_synchronous: str = "NORMAL") -> Database:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return SqliteDatabase(parsed, sqlite_synchronous)
    return AsyncDatabase(parsed)


def _unavailable(exc: BaseException) -> Unavailable:
    # The driver's own error (sqlite3/asyncpg), not SQLAlchemy's wrapper with the SQL text.
    cause = getattr(exc, "orig", None) or exc
    return Unavailable("the job store is unavailable; retry shortly", f"{cause}".strip())


class SqliteDatabase(Database):
    dialect = "sqlite"
    shared = False  # one `jobstate serve` owns the file

    def __init__(self, url: URL, synchronous: str) -> None:
        path = Path(url.database or "")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            message = f"cannot create the database directory {path.parent}: {exc}"
            raise Unavailable(message) from None
        sync_url = url.set(drivername="sqlite")
        self._writer = self._engine(sync_url, synchronous, "BEGIN IMMEDIATE", pool_size=1)
        # The writer thread's connection, kept open between transactions: checking one out of
        # the pool for every batch cost more than the batch's statements (NOTE: ~75 µs vs
        # ~42 µs a transaction here, timeit). Used only on the writer thread.
        self._writer_conn: Connection | None = None
        self._reader = self._engine(sync_url, synchronous, "BEGIN", pool_size=4)
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._read_threads = ThreadPoolExecutor(4, thread_name_prefix="sqlite-reader")

    @staticmethod
    def _engine(url: URL, synchronous: str, begin: str, pool_size: int) -> Engine:
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False},
            pool_size=pool_size,
            max_overflow=0,
        )

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            # PRAGMAs are per connection; isolation_level=None lets us issue BEGIN ourselves.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # On the driver itself: SQLAlchemy's execution path costs more than the statement.
            driver = conn.connection.driver_connection
            assert driver is not None  # SQLAlchemy clears it only once closed or invalidated
            driver.execute(begin)

        return engine

    async def _run(
        self,
        pool: ThreadPoolExecutor,
        engine: Engine,
        fn: Work[P, T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        def work() -> T:
            with engine.begin() as conn:
                return fn(conn, *args, **kwargs)

        try:
            return await asyncio.get_running_loop().run_in_executor(pool, work)
        except _STORE_ERRORS as exc:
            raise _unavailable(exc) from None

    async def write(self, fn: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        def work() -> T:
            if self._writer_conn is None:
                self._writer_conn = self._writer.connect()
            try:
                with self._writer_conn.begin():
                    return fn(self._writer_conn, *args, **kwargs)
            except BaseException:
                # After a failure the connection may be unusable (a full disk, a dropped
                # file): the next transaction starts on a fresh one.
                self._drop_writer_conn()
                raise

        try:
            return await asyncio.get_running_loop().run_in_executor(self._write_thread, work)
        except _STORE_ERRORS as exc:
            raise _unavailable(exc) from None

    def _drop_writer_conn(self) -> None:
        conn, self._writer_conn = self._writer_conn, None
        if conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                conn.close()

    async def read(self, fn: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(self._read_threads, self._reader, fn, *args, **kwargs)

    async def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # already shut down
            self._write_thread.submit(self._drop_writer_conn)
        self._write_thread.shutdown(wait=True)
        self._read_threads.shutdown(wait=True)
        self._writer.dispose()
        self._reader.dispose()


class AsyncDatabase(Database):
    dialect = "postgresql"
    shared = True  # replicas scale out on one database

    def __init__(self, url: URL) -> None:
        # Short connect/command timeouts: with the database down, RPCs fail fast (UNAVAILABLE).
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=10,
            max_overflow=10,
            pool_timeout=5,
            pool_pre_ping=True,
            connect_args={"timeout": 5, "command_timeout": 10},
        )

    async def write(self, fn: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            async with self.engine.begin() as conn:
                return await conn.run_sync(fn, *args, **kwargs)
        except _STORE_ERRORS as exc:
            raise _unavailable(exc) from None

    async def read(self, fn: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            async with self.engine.connect() as conn:
                return await conn.run_sync(fn, *args, **kwargs)
        except _STORE_ERRORS as exc:
            raise _unavailable(exc) from None

    async def close(self) -> None:
        await self.engine.dispose()
