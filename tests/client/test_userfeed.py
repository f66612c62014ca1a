"""What watch_jobs remembers per job, on its own: the versions it resumes from and the
finished jobs it will not yield again."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from jobstate.client import userfeed
from jobstate.client.userfeed import Positions
from jobstate.domain import EventType, JobEvent, Status, new_job
from jobstate.wire import MAX_AFTER_VERSIONS

JOB = new_job("j", "u", "k", {}, datetime(2026, 1, 1, tzinfo=UTC)).job


def event(job_id: str, version: int, status: Status = Status.PROCESSING) -> JobEvent:
    return JobEvent(EventType.PROGRESS, replace(JOB, job_id=job_id, version=version, status=status))


def test_resumes_from_the_last_version_yielded_and_forgets_finished_jobs() -> None:
    positions = Positions({"given": 4})
    positions.seen(event("a", 2))
    positions.seen(event("b", 1))
    positions.seen(event("a", 3))
    positions.seen(event("b", 2, Status.COMPLETE))
    assert positions.resume() == {"given": 4, "a": 3}
    assert [positions.last(job) for job in ("given", "a", "b", "never")] == [4, 3, 2, 0]


def test_resume_names_the_most_recently_active_jobs_within_the_services_limit() -> None:
    positions = Positions({})
    for index in range(MAX_AFTER_VERSIONS + 5):
        positions.seen(event(f"j{index}", 1))
    positions.seen(event("j0", 2))  # active again: among the ones resumed
    resumed = positions.resume()
    assert len(resumed) == MAX_AFTER_VERSIONS
    assert resumed["j0"] == 2 and "j1" not in resumed


def test_finished_jobs_are_remembered_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(userfeed, "FINISHED_REMEMBERED", 2)
    positions = Positions({})
    for job_id in ("x", "y", "z"):
        positions.seen(event(job_id, 5, Status.CANCELLED))
    assert [positions.last(job) for job in ("x", "y", "z")] == [0, 5, 5]
