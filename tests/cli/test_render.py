"""The operator commands' text and JSON, without a server: tables of cases."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from jobstate.domain import EventType, Job, JobEvent, Status
from jobstate_cli.render import columns, duration, event_line, job_dict, note, printable

CREATED = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
JOB = Job(
    job_id="j",
    user_id="u1",
    kind="overlay",
    status=Status.PROCESSING,
    progress=42.4,
    message="rendering",
    output_key="",
    error="",
    version=3,
    params={"source": "a.mp4"},
    external_id="rp-1",
    created_at=CREATED,
    updated_at=CREATED + timedelta(seconds=90, milliseconds=250),
)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, ünïcödé ✓", "plain text, ünïcödé ✓"),
        ("two\nlines", "two\\nlines"),
        ("\x1b[2J\x07", "\\x1b[2J\\x07"),
        ("tab\there\r", "tab\\there\\r"),
        ("right-to-left \u202eevil", "right-to-left \\u202eevil"),
        ("line\u2028separator", "line\\u2028separator"),
        ("del\x7f c1\x9b", "del\\x7f c1\\x9b"),
    ],
)
def test_printable_escapes_what_could_drive_a_terminal(text: str, shown: str) -> None:
    assert printable(text) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "0s"),
        (0, "0s"),
        (59.9, "59s"),
        (60, "1m"),
        (3599, "59m"),
        (3600, "1h"),
        (86_399, "23h"),
        (86_400, "1d"),
        (10 * 86_400 + 5, "10d"),
    ],
)
def test_duration(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


def test_columns_align_and_trim() -> None:
    assert columns([("A", "BB", "C"), ("long", "x", "")]) == "A     BB  C\nlong  x"


@pytest.mark.parametrize(
    ("changes", "shown"),
    [
        ({}, "rendering"),
        ({"status": Status.COMPLETE, "output_key": "exports/j/o.mp4"}, "output exports/j/o.mp4"),
        ({"status": Status.ERROR, "error": "ffmpeg\nexited 1"}, "ffmpeg\\nexited 1"),
        ({"status": Status.CANCELLED, "error": "no longer wanted"}, "no longer wanted"),
        ({"status": Status.CANCELLED}, "rendering"),
    ],
)
def test_note(changes: dict[str, object], shown: str) -> None:
    assert note(replace(JOB, **changes)) == shown  # type: ignore[arg-type]


def test_event_line() -> None:
    line = event_line(JobEvent(EventType.PROGRESS, JOB))
    assert line == "2026-11-30T12:01:30.250+00:00  v3    processing  42%  rendering"


def test_job_dict_has_every_sent_field_json_ready() -> None:
    done = replace(JOB, status=Status.COMPLETE, completed_at=CREATED + timedelta(minutes=2))
    assert job_dict(done) == {
        "job_id": "j",
        "user_id": "u1",
        "kind": "overlay",
        "status": "complete",
        "progress": 42.4,
        "message": "rendering",
        "output_key": "",
        "error": "",
        "version": 3,
        "params": {"source": "a.mp4"},
        "external_id": "rp-1",
        "created_at": "2026-11-30T12:00:00+00:00",
        "updated_at": "2026-11-30T12:01:30.250000+00:00",
        "completed_at": "2026-11-30T12:02:00+00:00",
    }
    assert job_dict(JOB)["completed_at"] is None
