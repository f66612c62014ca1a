"""The pure state machine and validation: tables of every (status x change) and every limit,
plus random sequences of changes that must never break the invariants. No event loop."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobstate import domain, wire
from jobstate.domain import (
    Cancel,
    Complete,
    EventType,
    Fail,
    Job,
    Progress,
    Status,
    Submit,
    apply,
    new_job,
)
from jobstate.errors import FailedPrecondition, InvalidArgument

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(seconds=1)

# A job in each status, as the state machine would have left it.
BASE = new_job("job-1", "u1", "overlay", {"fps": 30}, T0).job
JOBS: dict[Status, Job] = {
    Status.PENDING: BASE,
    Status.PROCESSING: replace(
        BASE,
        status=Status.PROCESSING,
        progress=40.0,
        message="rendering",
        external_id="rp-1",
        version=3,
    ),
    Status.COMPLETE: replace(
        BASE,
        status=Status.COMPLETE,
        progress=100.0,
        output_key="exports/a.mp4",
        version=4,
        completed_at=T0,
    ),
    Status.ERROR: replace(
        BASE, status=Status.ERROR, progress=40.0, error="boom", version=4, completed_at=T0
    ),
    Status.CANCELLED: replace(
        BASE, status=Status.CANCELLED, progress=40.0, error="user", version=4, completed_at=T0
    ),
}

P, R, C, E, X = (
    Status.PENDING,
    Status.PROCESSING,
    Status.COMPLETE,
    Status.ERROR,
    Status.CANCELLED,
)
NOOP = None
DENIED = FailedPrecondition

# (status, change) -> (event type, new status) | NOOP | DENIED
TABLE: list[tuple[Status, Any, Any]] = [
    (P, Submit("rp-1"), (EventType.SUBMITTED, R)),
    (P, Progress(50, "half"), (EventType.PROGRESS, R)),
    (P, Progress(0), (EventType.PROGRESS, R)),  # a report moves pending to processing
    (P, Complete("exports/a.mp4"), (EventType.COMPLETE, C)),
    (P, Fail("boom"), (EventType.ERROR, E)),
    (P, Cancel("user"), (EventType.CANCELLED, X)),
    (R, Submit("rp-1"), NOOP),
    (R, Submit("rp-2"), DENIED),  # a recorded external_id is never replaced
    (R, Progress(50, "half"), (EventType.PROGRESS, R)),
    (R, Progress(50), (EventType.PROGRESS, R)),
    (R, Progress(40, "new message"), (EventType.PROGRESS, R)),
    (R, Progress(40), NOOP),
    (R, Progress(40, "rendering"), NOOP),
    (R, Progress(10, "older"), NOOP),  # lower: accepted and ignored
    (R, Complete("exports/a.mp4"), (EventType.COMPLETE, C)),
    (R, Fail("boom"), (EventType.ERROR, E)),
    (R, Cancel(), (EventType.CANCELLED, X)),
    (C, Submit("rp-1"), DENIED),
    (C, Progress(50), NOOP),  # lower than 100
    (C, Progress(100), NOOP),
    (C, Complete("exports/a.mp4"), NOOP),
    (C, Complete("exports/b.mp4"), DENIED),
    (C, Fail("boom"), DENIED),
    (C, Cancel(), DENIED),
    (E, Submit("rp-1"), DENIED),
    (E, Progress(10), NOOP),
    (E, Progress(50), DENIED),
    (E, Complete("exports/a.mp4"), DENIED),
    (E, Fail("boom"), NOOP),
    (E, Fail("another error"), NOOP),
    (E, Cancel(), DENIED),
    (X, Submit("rp-1"), DENIED),
    (X, Progress(10), NOOP),
    (X, Progress(50), DENIED),
    (X, Complete("exports/a.mp4"), DENIED),
    (X, Fail("boom"), DENIED),
    (X, Cancel(), NOOP),
    (X, Cancel("again"), NOOP),
]


def test_a_processing_job_without_an_external_id_records_one() -> None:
    # A worker reported before its submission was recorded: the id is still recorded once.
    reported = replace(JOBS[R], external_id="")
    event = apply(reported, Submit("rp-9"), T1)
    assert event is not None
    job = event.job
    assert (event.type, job.status, job.external_id, job.progress, job.message) == (
        EventType.SUBMITTED,
        R,
        "rp-9",
        40.0,
        "rendering",
    )
    assert apply(job, Submit("rp-9"), T1) is None
    with pytest.raises(FailedPrecondition, match="external_id"):
        apply(job, Submit("rp-1"), T1)


def test_table_covers_every_status_and_change_kind() -> None:
    covered = {(status, type(change)) for status, change, _ in TABLE}
    kinds = {Submit, Progress, Complete, Fail, Cancel}
    assert covered == {(s, k) for s in Status for k in kinds}


@pytest.mark.parametrize(("status", "change", "expected"), TABLE, ids=repr)
def test_transition(status: Status, change: Any, expected: Any) -> None:
    job = JOBS[status]
    if expected is DENIED:
        with pytest.raises(FailedPrecondition) as info:
            apply(job, change, T1)
        # The message names the job and the state it is in.
        assert job.job_id in str(info.value)
        assert status.value in str(info.value) or "different output_key" in str(info.value)
        return
    event = apply(job, change, T1)
    if expected is NOOP:
        assert event is None
        return
    assert event is not None
    assert (event.type, event.job.status) == expected
    assert (event.version, event.job.updated_at) == (job.version + 1, T1)
    assert (event.job_id, event.job.created_at, event.job.user_id) == (job.job_id, T0, "u1")
    assert event.job.completed_at == (T1 if event.job.status.terminal else None)


@pytest.mark.parametrize(
    ("status", "change", "fields"),
    [
        (P, Submit("rp-9"), {"external_id": "rp-9", "progress": 0.0}),
        (R, Progress(55.5, "more"), {"progress": 55.5, "message": "more", "external_id": "rp-1"}),
        (R, Progress(60), {"progress": 60.0, "message": "rendering"}),  # empty keeps message
        (P, Complete("exports/z.mp4"), {"progress": 100.0, "output_key": "exports/z.mp4"}),
        (R, Complete("exports/z.mp4"), {"progress": 100.0, "output_key": "exports/z.mp4"}),
        (R, Fail("ffmpeg exited 1"), {"error": "ffmpeg exited 1", "progress": 40.0}),
        (R, Cancel("user asked"), {"error": "user asked", "progress": 40.0}),
    ],
    ids=repr,
)
def test_accepted_change_sets_fields(status: Status, change: Any, fields: dict[str, Any]) -> None:
    event = apply(JOBS[status], change, T1)
    assert event is not None
    assert {name: getattr(event.job, name) for name in fields} == fields


def test_new_job_is_pending_version_1() -> None:
    event = new_job("j", "u", "overlay", {"a": [1, "x"]}, T0, idempotency_key="k")
    job = event.job
    assert (event.type, job.status, job.version, job.progress) == (
        EventType.CREATED,
        Status.PENDING,
        1,
        0.0,
    )
    assert (job.params, job.idempotency_key, job.created_at, job.updated_at) == (
        {"a": [1, "x"]},
        "k",
        T0,
        T0,
    )
    assert job.completed_at is None


def test_event_types_that_change_status() -> None:
    assert [t for t in EventType if not t.changes_status] == [EventType.PROGRESS]
    assert {s for s in Status if s.terminal} == {C, E, X}


# --- validation -------------------------------------------------------------------------

BAD_JOB_IDS = ["", "a" * 129, "a b", "a/b", "a.b", "ü", "a\x00", "id\n", "../x"]
GOOD_JOB_IDS = ["a", "a" * 128, "Az09_-", "0b6f3c9e-2b1d-4c1e-9a55-0f0c2a9d8f11"]


@pytest.mark.parametrize("job_id", BAD_JOB_IDS, ids=repr)
def test_bad_job_id(job_id: str) -> None:
    with pytest.raises(InvalidArgument, match="job_id"):
        domain.validate_job_id(job_id)
    with pytest.raises(InvalidArgument, match="job_id"):
        new_job(job_id, "u", "k", {}, T0)


@pytest.mark.parametrize("job_id", GOOD_JOB_IDS)
def test_good_job_id(job_id: str) -> None:
    assert domain.validate_job_id(job_id) == job_id
    assert new_job(job_id, "u", "k", {}, T0).job_id == job_id


BAD_PROGRESS = [math.nan, math.inf, -math.inf, -1, -0.001, 100.001, 101, 1e999, True, False]


@pytest.mark.parametrize("progress", BAD_PROGRESS, ids=repr)
def test_bad_progress(progress: Any) -> None:
    with pytest.raises(InvalidArgument, match="progress"):
        domain.validate_progress(progress)
    # Validation comes before the state machine: even a finished job answers INVALID_ARGUMENT.
    for job in JOBS.values():
        with pytest.raises(InvalidArgument, match="progress"):
            apply(job, Progress(progress), T1)


@pytest.mark.parametrize("progress", ["50", None, b"1", [50]], ids=repr)
def test_progress_must_be_a_number(progress: Any) -> None:
    with pytest.raises(InvalidArgument, match="progress"):
        domain.validate_progress(progress)


@pytest.mark.parametrize("progress", [0, 0.0, -0.0, 50, 50.5, 100, 100.0])
def test_good_progress(progress: float) -> None:
    assert domain.validate_progress(progress) == float(progress)
    assert type(domain.validate_progress(progress)) is float


def _limit_cases() -> list[tuple[str, Any, int]]:
    """(field, build(value) -> callable that validates, limit)."""
    return [
        ("message", lambda v: apply(JOBS[R], Progress(90, v), T1), wire.MAX_MESSAGE),
        ("error", lambda v: apply(JOBS[R], Fail(v), T1), wire.MAX_ERROR),
        ("reason", lambda v: apply(JOBS[R], Cancel(v), T1), wire.MAX_ERROR),
        ("output_key", lambda v: apply(JOBS[R], Complete(v), T1), wire.MAX_OUTPUT_KEY),
        ("external_id", lambda v: apply(JOBS[P], Submit(v), T1), wire.MAX_EXTERNAL_ID),
        ("kind", lambda v: new_job("j", "u", v, {}, T0), wire.MAX_KIND),
        ("user_id", lambda v: new_job("j", v, "k", {}, T0), wire.MAX_USER_ID),
        (
            "idempotency_key",
            lambda v: new_job("j", "u", "k", {}, T0, idempotency_key=v),
            wire.MAX_IDEMPOTENCY_KEY,
        ),
    ]


@pytest.mark.parametrize(("field", "call", "limit"), _limit_cases(), ids=lambda x: str(x)[:20])
def test_text_limits(field: str, call: Any, limit: int) -> None:
    assert call("x" * limit) is not None  # exactly at the limit is fine
    with pytest.raises(InvalidArgument, match=field):
        call("x" * (limit + 1))
    with pytest.raises(InvalidArgument, match=field):
        call("a\x00b")


def test_documented_limits() -> None:
    # The numbers the contract and the .proto promise.
    assert (wire.MAX_KIND, wire.MAX_PARAMS_BYTES) == (64, 64 * 1024)
    assert (wire.MAX_MESSAGE, wire.MAX_ERROR, wire.MAX_OUTPUT_KEY) == (1024, 4096, 1024)
    assert (wire.MAX_EXTERNAL_ID, wire.MAX_IDEMPOTENCY_KEY) == (256, 128)


@pytest.mark.parametrize(
    ("field", "call"),
    [
        ("user_id", lambda: new_job("j", "", "k", {}, T0)),
        ("external_id", lambda: apply(JOBS[P], Submit(""), T1)),
        ("output_key", lambda: apply(JOBS[R], Complete(""), T1)),
    ],
)
def test_required_fields(field: str, call: Any) -> None:
    with pytest.raises(InvalidArgument, match=f"{field} is required"):
        call()


def _params_of_size(size: int) -> dict[str, str]:
    overhead = len('{"p":""}')
    return {"p": "x" * (size - overhead)}


def test_params_limit() -> None:
    at_limit = _params_of_size(wire.MAX_PARAMS_BYTES)
    assert new_job("j", "u", "k", at_limit, T0).job.params == at_limit
    with pytest.raises(InvalidArgument, match="params"):
        new_job("j", "u", "k", _params_of_size(wire.MAX_PARAMS_BYTES + 1), T0)


def test_params_size_counts_utf8_bytes() -> None:
    # 'é' is one character but two bytes of JSON.
    with pytest.raises(InvalidArgument, match="params"):
        new_job("j", "u", "k", {"p": "é" * (wire.MAX_PARAMS_BYTES // 2)}, T0)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=repr)
def test_params_with_non_finite_numbers_are_invalid_argument(value: float) -> None:
    # A google.protobuf.Struct can carry NaN/inf; they are not JSON and must be refused as
    # INVALID_ARGUMENT, not escape as a ValueError (which the servicer would answer INTERNAL).
    with pytest.raises(InvalidArgument, match="params"):
        new_job("j", "u", "k", {"fps": value}, T0)


# --- invariants under random sequences ---------------------------------------------------

texts = st.sampled_from(["", "a", "b", "rendering"])
keys = st.sampled_from(["exports/a.mp4", "exports/b.mp4"])
changes = st.one_of(
    st.builds(Submit, st.sampled_from(["rp-1", "rp-2"])),
    st.builds(
        Progress,
        st.one_of(st.sampled_from([0.0, 10.0, 50.0, 100.0]), st.floats(0, 100)),
        texts,
    ),
    st.builds(Complete, keys),
    st.builds(Fail, texts),
    st.builds(Cancel, texts),
)
EXPECTED_STATUS = {
    EventType.SUBMITTED: {R},
    EventType.PROGRESS: {R},
    EventType.COMPLETE: {C},
    EventType.ERROR: {E},
    EventType.CANCELLED: {X},
}
LEGAL = {P: {P, R, C, E, X}, R: {R, C, E, X}, C: {C}, E: {E}, X: {X}}


@given(st.lists(changes, max_size=40))
def test_random_sequences_keep_the_invariants(seq: list[Any]) -> None:
    job = new_job("j", "u", "k", {}, T0).job
    for i, change in enumerate(seq):
        now = T0 + timedelta(seconds=i + 1)
        try:
            event = apply(job, change, now)
        except FailedPrecondition:
            # Only a finished job refuses a change, or one whose external_id would be replaced.
            replaced = isinstance(change, Submit) and job.external_id not in (
                "",
                change.external_id,
            )
            assert job.status.terminal or replaced
            continue
        if event is None:
            continue  # a no-op: nothing changed, no version
        new = event.job
        assert new.version == job.version + 1
        assert new.updated_at == now
        assert new.progress >= job.progress
        assert new.status in LEGAL[job.status]
        assert new.status in EXPECTED_STATUS[event.type]
        assert not job.status.terminal  # terminal stays terminal: no event after it
        assert (new.job_id, new.user_id, new.created_at) == (job.job_id, job.user_id, T0)
        assert new.completed_at == (now if new.status.terminal else None)
        # Repeating an accepted change is harmless: no new version.
        assert apply(new, change, now + timedelta(microseconds=1)) is None
        job = new


@given(st.sampled_from(list(Status)), changes)
def test_no_op_and_refusal_leave_the_job_untouched(status: Status, change: Any) -> None:
    job = JOBS[status]
    before = replace(job)
    try:
        event = apply(job, change, T1)
    except FailedPrecondition:
        event = None
    assert job == before
    if event is not None:
        assert event.job is not job
