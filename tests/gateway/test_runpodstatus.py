"""RunPod's status bodies read once (`runpodstatus.read_status`), and what a callback makes of
a body (`callbacks.parse`): tables, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.callbacks import ConfirmComplete, parse
from gateway.errors import BadRequest
from gateway.runpodstatus import (
    Failed,
    Finished,
    NoOutput,
    Reading,
    RefusedOutput,
    Running,
    UnknownStatus,
    Unreadable,
    read_status,
)
from jobstate.domain import Cancel, Complete, Fail, Progress, Submit

PREFIX = "exports/j1/"
OUTSIDE = "is not inside 'exports/j1/'"


@pytest.mark.parametrize(
    ("body", "reading"),
    [
        ({"status": "IN_QUEUE", "id": "rp-1"}, Running("rp-1")),
        ({"status": "IN_PROGRESS", "id": "rp-1"}, Running("rp-1")),
        ({"status": "IN_PROGRESS"}, Running("")),
        (
            {"status": "COMPLETED", "output": {"output_key": "exports/j1/a.mp4"}},
            Finished(Complete("exports/j1/a.mp4")),
        ),
        (
            {"status": "COMPLETED", "output": {"output_key": "exports/j2/a.mp4"}},
            RefusedOutput(OUTSIDE),
        ),
        (
            {"status": "COMPLETED", "output": {"output_key": "exports/j1/../x"}},
            RefusedOutput("has an empty, '.' or '..' path segment"),
        ),
        (
            {"status": "COMPLETED", "output": {"output_key": ""}},
            RefusedOutput("must be a non-empty string"),
        ),
        (
            {"status": "COMPLETED", "output": {"output_key": 7}},
            RefusedOutput("must be a non-empty string"),
        ),
        ({"status": "COMPLETED", "output": {}}, NoOutput()),
        ({"status": "COMPLETED", "output": "done"}, NoOutput()),
        ({"status": "COMPLETED"}, NoOutput()),
        ({"status": "FAILED", "error": "ffmpeg exited 1"}, Failed("ffmpeg exited 1")),
        ({"status": "FAILED", "error": "a\x00b" + "e" * 5000}, Failed("ab" + "e" * 4094)),
        ({"status": "FAILED", "error": 7}, Failed("")),
        ({"status": "FAILED"}, Failed("")),
        ({"status": "TIMED_OUT"}, Finished(Fail("the RunPod job timed out"))),
        ({"status": "CANCELLED", "id": "rp-1"}, Finished(Cancel("cancelled on RunPod"))),
        ({"status": "RUNNING"}, UnknownStatus("RUNNING")),
        ({"status": "completed"}, UnknownStatus("completed")),
    ],
)
def test_read_status(body: dict[str, Any], reading: Reading) -> None:
    assert read_status(body, PREFIX) == reading


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "status must be a string"),
        ({"status": 3}, "status must be a string"),
        ({"status": "IN_PROGRESS", "id": ".."}, "id must be a RunPod job id"),
        ({"status": "IN_QUEUE", "id": "a/b"}, "id must be a RunPod job id"),
        ({"status": "COMPLETED", "id": 7, "output": {}}, "id must be a RunPod job id"),
        ({"status": "RUNNING", "id": "x" * 129}, "id must be a RunPod job id"),
    ],
)
def test_unreadable_bodies_name_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(Unreadable, match=message):
        read_status(body, PREFIX)


@pytest.mark.parametrize(
    ("body", "change"),
    [
        ({"status": "progress", "progress": 50}, Progress(50.0, "")),
        ({"status": "progress", "progress": 0, "message": "m"}, Progress(0.0, "m")),
        ({"status": "progress", "progress": 100, "message": None}, Progress(100.0, "")),
        ({"status": "complete", "output_key": "exports/j1/a.mp4"}, Complete("exports/j1/a.mp4")),
        ({"status": "error", "error": "ffmpeg exited 1"}, Fail("ffmpeg exited 1")),
        ({"status": "error"}, Fail("the worker failed")),
        ({"status": "IN_QUEUE", "id": "rp-1"}, Submit("rp-1")),
        ({"status": "FAILED", "id": "rp-1", "error": "oom"}, Fail("oom")),
        ({"status": "FAILED", "id": "rp-1"}, Fail("the RunPod job failed")),
        ({"status": "TIMED_OUT"}, Fail("the RunPod job timed out")),
        ({"status": "CANCELLED"}, Cancel("cancelled on RunPod")),
        (
            {"status": "COMPLETED", "output": {"output_key": "exports/j1/a.mp4"}},
            Complete("exports/j1/a.mp4"),
        ),
        ({"status": "COMPLETED", "id": "rp-1", "output": {}}, ConfirmComplete()),
    ],
)
def test_a_callback_asks_for_one_change(body: dict[str, Any], change: object) -> None:
    assert parse(body, PREFIX) == change


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"progress": 5}, "status must be a string"),
        ({"status": "progress", "progress": 101}, "progress must be a finite number"),
        ({"status": "progress", "progress": True}, "progress must be a finite number"),
        ({"status": "progress", "progress": 5, "message": 7}, "message must be a string"),
        ({"status": "complete"}, "output_key must be a non-empty string"),
        ({"status": "complete", "output_key": "elsewhere/x"}, f"output_key {OUTSIDE}"),
        ({"status": "error", "error": 3}, "error must be a string"),
        ({"status": "IN_PROGRESS"}, "id is required"),
        ({"status": "IN_PROGRESS", "id": "a b"}, "id must be a RunPod job id"),
        (
            {"status": "COMPLETED", "output": {"output_key": "exports/x/a"}},
            "output.output_key is not inside",
        ),
        ({"status": "bogus"}, "unknown callback status 'bogus'"),
    ],
)
def test_a_bad_callback_names_what_is_wrong(body: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse(body, PREFIX)
