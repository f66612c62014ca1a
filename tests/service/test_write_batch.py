"""The store's batched write on a real database, both engines: many changes in one
transaction, each version-checked; a lost check is re-applied to the row as it is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from jobstate import domain, writes
from jobstate.domain import Cancel, JobEvent, Progress
from jobstate.errors import FailedPrecondition
from jobstate.store import Store

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(database_url)
    try:
        yield opened
    finally:
        await opened.close()


async def created(store: Store, *job_ids: str) -> None:
    for job_id in job_ids:
        await store.create(domain.new_job(job_id, "u1", "k", {}, T0), T0 - timedelta(days=1))


def change(store_job: domain.Job, what: domain.Change, minutes: int) -> writes.Write:
    event = domain.apply(store_job, what, T0 + timedelta(minutes=minutes))
    assert event is not None
    return writes.Write(event, store_job.version, what)


async def test_two_changes_of_one_job_from_one_stale_read_both_land_in_order(
    store: Store,
) -> None:
    # What a caller that went away mid-commit can leave behind: a second change computed from
    # the same (now stale) version lands in the same batch. The first wins its check; the
    # second is re-applied to the row the first wrote, in the same transaction.
    await created(store, "a", "b")
    a = await store.get("a")
    b = await store.get("b")
    assert a is not None and b is not None
    batch = [
        change(a, Progress(10, "first"), 1),
        change(b, Progress(50), 1),
        change(a, Progress(20, "second"), 2),
        change(a, Cancel("stop"), 3),
        change(b, Progress(40), 2),  # lower than what the batch already wrote: ignored
    ]
    outcomes = await store.db.write(writes.write_batch, batch)
    summary = [
        (o.job.job_id, o.version, o.job.status.value, o.job.progress, o.job.message)
        if isinstance(o, JobEvent)
        else (o.job_id, o.version, "unchanged")
        if isinstance(o, domain.Job)
        else o
        for o in outcomes
    ]
    assert summary == [
        ("a", 2, "processing", 10.0, "first"),
        ("b", 2, "processing", 50.0, ""),
        ("a", 3, "processing", 20.0, "second"),
        ("a", 4, "cancelled", 20.0, "second"),
        ("b", 2, "unchanged"),
    ]
    _, history = await store.get_with_events("a", 0)
    assert [(e.type.value, e.version) for e in history] == [
        ("created", 1),
        ("progress", 2),
        ("progress", 3),
        ("cancelled", 4),
    ]


async def test_a_change_a_finished_row_refuses_is_that_changes_error(store: Store) -> None:
    await created(store, "done", "live")
    done = await store.get("done")
    live = await store.get("live")
    assert done is not None and live is not None
    await store.update(*_cancel(done))
    stale_progress = change(done, Progress(30), 5)  # computed before the cancel
    outcomes = await store.db.write(
        writes.write_batch, [stale_progress, change(live, Progress(5), 5)]
    )
    assert isinstance(outcomes[0], FailedPrecondition)
    assert isinstance(outcomes[1], JobEvent) and outcomes[1].version == 2


def _cancel(job: domain.Job) -> tuple[JobEvent, int, domain.Change]:
    event = domain.apply(job, Cancel("x"), T0 + timedelta(minutes=1))
    assert event is not None
    return event, job.version, Cancel("x")
