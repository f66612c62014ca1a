"""`jobstate.client.sync` against a real `jobstate serve`, from plain (non-async) code."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.processes import ServeProcess
from support.servers import sqlite_url

from jobstate.client import (
    EventType,
    FailedPrecondition,
    InitialStateComplete,
    JobEvent,
    NotFound,
    Status,
)
from jobstate.client.sync import JobStateClient


@pytest.fixture
def target(tmp_path: Path) -> Iterator[str]:
    # Started and stopped by event loops of their own: the test itself is plain blocking code.
    serve = ServeProcess(database_url=sqlite_url(tmp_path), log_path=tmp_path / "serve.log")
    asyncio.run(serve.start())
    try:
        yield serve.target
    finally:
        asyncio.run(serve.stop())


def test_blocking_calls_iterators_and_errors(target: str) -> None:
    with JobStateClient(target, timeout=10) as client:
        job = client.create_job("u1", "overlay", {"a": 1}, job_id="s1")
        client.create_job("u1", job_id="s2")
        client.report_progress("s1", 50, "half")
        done = client.complete_job("s1", "exports/s1/out.mp4")
        listed = [j.job_id for j in client.list_jobs("u1", page_size=1)]
        events = [(e.type, e.version) for e in client.watch("s1")]
        with pytest.raises(NotFound):
            client.get_job("missing")
        with pytest.raises(FailedPrecondition):
            client.cancel_job("s1")
    assert (job.params, done.status, listed) == ({"a": 1}, Status.COMPLETE, ["s2", "s1"])
    assert events == [(EventType.SNAPSHOT, 3)]


def test_leaving_a_watch_early_closes_it(target: str) -> None:
    with JobStateClient(target, timeout=10) as client:
        client.create_job("u1", job_id="w")
        watch = client.watch("w")
        first = next(watch)
        watch.close()  # the stream is cancelled; the client stays usable
        assert (first.type, client.get_job("w").status) == (EventType.SNAPSHOT, Status.PENDING)


def test_watch_jobs_is_a_plain_generator(target: str) -> None:
    with JobStateClient(target, timeout=10) as client:
        client.create_job("u1", job_id="s")
        items = client.watch_jobs("u1")
        first = next(items)
        marker = next(items)
        items.close()
    assert isinstance(first, JobEvent) and (first.job_id, first.type) == ("s", EventType.SNAPSHOT)
    assert marker == InitialStateComplete(False, ())
