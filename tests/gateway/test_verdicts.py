"""The reconciler's rules as a table (`verdicts.judge`): a stale job and what RunPod
answered in, a verdict out. No I/O, no clock: `now` is given."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gateway.verdicts import (
    GONE,
    NEVER_SUBMITTED,
    NOT_ASKED,
    STOPPED_REPORTING,
    UNREACHABLE,
    Answer,
    Rules,
    Verdict,
    judge,
)
from jobstate.client import Job, Status
from jobstate.domain import Cancel, Complete, Fail

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
RULES = Rules(hard_deadline=timedelta(hours=6), output_root="exports/")
OVERDUE = Fail(
    "the GPU worker stopped reporting: the job was still unfinished after its 6 h deadline"
)
RUNNING = Job(
    job_id="j1",
    user_id="u1",
    kind="overlay",
    status=Status.PROCESSING,
    progress=40.0,
    message="",
    output_key="",
    error="",
    version=3,
    params={},
    external_id="rp-1",
    created_at=NOW - timedelta(hours=1),
    updated_at=NOW - timedelta(minutes=20),
)
OLD = replace(RUNNING, created_at=NOW - timedelta(hours=7))
PENDING = replace(RUNNING, status=Status.PENDING, external_id="", version=1)
UNRECORDED = replace(RUNNING, external_id="")  # reported before its id was recorded


def refused(problem: str) -> Fail:
    return Fail(f"RunPod reports an output key that {problem}; it was not accepted")


@pytest.mark.parametrize(
    ("job", "answer", "verdict"),
    [
        pytest.param(
            PENDING, NOT_ASKED, Verdict(Fail(NEVER_SUBMITTED), silence=True), id="never-submitted"
        ),
        pytest.param(UNRECORDED, NOT_ASKED, Verdict(), id="reporting-without-id"),
        pytest.param(
            replace(UNRECORDED, created_at=OLD.created_at),
            NOT_ASKED,
            Verdict(OVERDUE, silence=True),
            id="reporting-without-id-overdue",
        ),
        pytest.param(RUNNING, NOT_ASKED, Verdict(), id="no-runpod"),
        pytest.param(OLD, NOT_ASKED, Verdict(OVERDUE, silence=True), id="no-runpod-overdue"),
        pytest.param(RUNNING, UNREACHABLE, Verdict(), id="unreachable"),
        pytest.param(OLD, UNREACHABLE, Verdict(OVERDUE, silence=True), id="unreachable-overdue"),
        pytest.param(RUNNING, GONE, Verdict(Fail(STOPPED_REPORTING), silence=True), id="gone"),
        pytest.param(
            RUNNING,
            {"status": "COMPLETED", "output": {"output_key": "exports/j1/a.mp4"}},
            Verdict(Complete("exports/j1/a.mp4")),
            id="completed",
        ),
        pytest.param(
            OLD,
            {"status": "COMPLETED", "output": {"output_key": "exports/j1/a.mp4"}},
            Verdict(Complete("exports/j1/a.mp4")),
            id="completed-overdue: RunPod's word wins",
        ),
        pytest.param(
            RUNNING,
            {"status": "COMPLETED", "output": {"output_key": "exports/j2/a.mp4"}},
            Verdict(refused("is not inside 'exports/j1/'")),
            id="completed-with-another-jobs-output",
        ),
        pytest.param(
            RUNNING,
            {"status": "COMPLETED", "output": "done"},
            Verdict(Fail("RunPod reports the job completed without an output_key")),
            id="completed-without-output",
        ),
        pytest.param(
            RUNNING,
            {"status": "FAILED", "error": "ffmpeg exited 1"},
            Verdict(Fail("the RunPod job failed"), note="RunPod reports FAILED: 'ffmpeg exited 1'"),
            id="failed: RunPod's text only in the note",
        ),
        pytest.param(
            RUNNING,
            {"status": "TIMED_OUT"},
            Verdict(Fail("the RunPod job timed out")),
            id="timed-out",
        ),
        pytest.param(
            RUNNING, {"status": "CANCELLED"}, Verdict(Cancel("cancelled on RunPod")), id="cancelled"
        ),
        pytest.param(RUNNING, {"status": "IN_QUEUE"}, Verdict(), id="in-queue"),
        pytest.param(RUNNING, {"status": "IN_PROGRESS", "id": "rp-1"}, Verdict(), id="in-progress"),
        pytest.param(
            OLD,
            {"status": "IN_PROGRESS"},
            Verdict(OVERDUE, silence=True, cancel_on_runpod=True),
            id="in-progress-overdue",
        ),
        pytest.param(
            RUNNING,
            {"status": "SOMETHING_NEW"},
            Verdict(note="RunPod status 'SOMETHING_NEW' is not one we know"),
            id="unknown-status",
        ),
        pytest.param(
            OLD,
            {"status": "SOMETHING_NEW"},
            Verdict(OVERDUE, silence=True, cancel_on_runpod=True),
            id="unknown-status-overdue",
        ),
        pytest.param(
            RUNNING,
            {"status": None},
            Verdict(note="RunPod answered something unreadable: status must be a string"),
            id="unreadable",
        ),
    ],
)
def test_judge(job: Job, answer: Answer, verdict: Verdict) -> None:
    assert judge(job, NOW, RULES, answer) == verdict


@pytest.mark.parametrize(
    ("verdict", "outcome"),
    [
        (Verdict(), "left"),
        (Verdict(Complete("k")), "completed"),
        (Verdict(Fail("e")), "failed"),
        (Verdict(Cancel("r")), "cancelled"),
    ],
)
def test_outcome_names(verdict: Verdict, outcome: str) -> None:
    assert verdict.outcome == outcome
