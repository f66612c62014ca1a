"""Retention passes over many jobs without holding SQLite's single writer.

20,000 jobs past the progress-event cap, written straight into the database (five kinds: still
running with events to trim or already trimmed, finished before the cutoff with or without
progress events left, finished recently with events past the cap). A pass removes exactly what
the rules say (whole tables compared), a second pass finds nothing and writes nothing, and a
write made while a pass runs is answered before the pass ends. Statements are seen through a
SQLAlchemy `before_cursor_execute` listener in this process.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import Engine, create_engine, event, insert, select
from support.servers import create_job, service, stub

from jobstate.schema import job_events, jobs
from jobstate.v1 import jobstate_pb2 as pb

KEEP = 3
WAIT = 60.0
NOW = datetime.now(UTC)
CUTOFF = NOW - timedelta(days=1)
LONG_AGO = NOW - timedelta(days=2)
RECENTLY = NOW - timedelta(hours=1)


def _job(job_id: str, version: int, completed_at: datetime | None) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "user_id": "u1",
        "kind": "k",
        "status": "processing" if completed_at is None else "complete",
        "progress": 50.0,
        "message": "",
        "output_key": "" if completed_at is None else "exports/x",
        "error": "",
        "version": version,
        "params": {},
        "external_id": "rp",
        "idempotency_key": None,
        "created_at": LONG_AGO - timedelta(days=1),
        "updated_at": completed_at or RECENTLY,
        "completed_at": completed_at,
    }


def _event(job_id: str, version: int, type_: str, at: datetime) -> dict[str, Any]:
    status = {"created": "pending", "complete": "complete"}.get(type_, "processing")
    return {
        "job_id": job_id,
        "version": version,
        "type": type_,
        "status": status,
        "progress": float(version),
        "message": "",
        "output_key": "",
        "error": "",
        "external_id": "",
        "at": at,
    }


def generate(count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`count` jobs of five kinds, each past the cap of KEEP progress events."""
    job_rows, event_rows = [], []
    for i in range(count):
        job_id = f"j{i:06d}"
        kind = i % 5
        finished = {2: LONG_AGO, 3: LONG_AGO, 4: RECENTLY}.get(kind)
        version = 6 if finished is None else 7
        job_rows.append(_job(job_id, version, finished))
        at = (finished or RECENTLY) - timedelta(minutes=5)
        types = ["created", "submitted"] + ["progress"] * 4 + ["complete"][: version - 6]
        for v, type_ in enumerate(types, start=1):
            trimmed = kind == 1 and v == 3  # a running job an earlier pass has trimmed
            compacted = kind == 3 and type_ == "progress"  # compacted when it was old enough
            if not (trimmed or compacted):
                event_rows.append(_event(job_id, v, type_, at))
    return job_rows, event_rows


def expected_after_pass(
    job_rows: list[dict[str, Any]], event_rows: list[tuple[Any, ...]]
) -> set[tuple[Any, ...]]:
    """The rules, independently: a job finished before the cutoff loses every PROGRESS event,
    any other keeps those of its latest KEEP versions."""
    limits = {}
    for job in job_rows:
        finished_long_ago = job["completed_at"] is not None and job["completed_at"] < CUTOFF
        limits[job["job_id"]] = job["version"] if finished_long_ago else job["version"] - KEEP
    return {
        row
        for row in event_rows
        if not (row[2] == "progress" and row[0] in limits and row[1] <= limits[row[0]])
    }


class Statements:
    """Every statement this process sends to the database file, with the thread that sent it
    (SQLite's own trace of each connection: statements the store sends straight to the
    driver are seen too)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []
        self.hook: Any = None

    def __call__(self, dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.set_trace_callback(self._trace)

    def _trace(self, statement: str) -> None:
        self.log.append((threading.current_thread().name, statement))
        if self.hook is not None:
            self.hook(statement)

    def since(self, mark: int) -> list[tuple[str, str]]:
        return self.log[mark:]


@pytest.fixture
def statements() -> Iterator[Statements]:
    seen = Statements()
    event.listen(Engine, "connect", seen)
    try:
        yield seen
    finally:
        event.remove(Engine, "connect", seen)


def fill(path: Path, count: int) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """Write the jobs straight into the database file; return the jobs and the events table."""
    job_rows, event_rows = generate(count)
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            conn.execute(insert(jobs), job_rows)
            conn.execute(insert(job_events), event_rows)
    finally:
        engine.dispose()
    return job_rows, read_events(path)


def read_events(path: Path) -> list[tuple[Any, ...]]:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(select(job_events)).all()]
    finally:
        engine.dispose()


def read_jobs(path: Path) -> list[tuple[Any, ...]]:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(select(jobs)).all()]
    finally:
        engine.dispose()


async def test_a_pass_removes_exactly_what_it_should_and_a_second_pass_writes_nothing(
    tmp_path: Path, statements: Statements
) -> None:
    async with service(tmp_path, retention_interval=3600) as server:
        path = tmp_path / "jobstate.db"
        job_rows, before = fill(path, 20_000)
        jobs_before = read_jobs(path)

        first = await server.store.compact(CUTOFF, KEEP)
        after = read_events(path)
        mark = len(statements.log)
        second = await server.store.compact(CUTOFF, KEEP)
        second_pass = statements.since(mark)

        assert set(after) == expected_after_pass(job_rows, before)
        assert first == len(before) - len(after) == 4000 + 4 * 4000 + 2 * 4000
        assert read_jobs(path) == jobs_before
        # Nothing left to remove: one read, no write, however many jobs there are.
        assert second == 0
        verbs = [statement.split()[0].upper() for _, statement in second_pass]
        assert [verb for verb in verbs if verb in {"DELETE", "UPDATE", "INSERT"}] == []
        assert len(verbs) <= 4, verbs


async def test_a_write_during_a_pass_is_answered_before_the_pass_ends(
    tmp_path: Path, statements: Statements
) -> None:
    async with (
        service(tmp_path, retention_interval=3600) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        client = stub(channel)
        await create_job(client, "live")
        fill(tmp_path / "jobstate.db", 5_000)
        loop = asyncio.get_running_loop()
        paused = asyncio.Event()
        resume = threading.Event()
        reads = []

        def pause_at_the_second_page(statement: str) -> None:
            # The pass reads which jobs to trim next on a reader thread, between its write
            # transactions; hold it there (the writer is free) until the write was answered.
            if threading.current_thread().name.startswith("sqlite-reader") and (
                "EXISTS" in statement
            ):
                reads.append(statement)
                if len(reads) == 2:
                    loop.call_soon_threadsafe(paused.set)
                    resume.wait(WAIT)

        statements.hook = pause_at_the_second_page
        passing = asyncio.create_task(server.store.compact(CUTOFF, KEEP))
        try:
            await asyncio.wait_for(paused.wait(), WAIT)
            reply = await client.ReportProgress(
                pb.ReportProgressRequest(job_id="live", progress=10), timeout=WAIT
            )
        finally:
            resume.set()
        removed = await asyncio.wait_for(passing, WAIT)

    writes = [s for thread, s in statements.log if thread.startswith("sqlite-writer")]
    update = next(i for i, s in enumerate(writes) if s.startswith("UPDATE jobs"))
    deletes = [i for i, s in enumerate(writes) if s.startswith("DELETE FROM job_events")]
    assert reply.job.version == 2
    assert removed == 1000 + 4 * 1000 + 2 * 1000
    # The write went in between the pass's slices, each its own transaction.
    assert deletes[0] < update < deletes[-1]
