"""Where a job's output may be (`gateway.outputs`): a table, no server."""

from __future__ import annotations

import pytest

from gateway.outputs import key_problem, output_prefix
from jobstate.wire import MAX_OUTPUT_KEY

PREFIX = output_prefix("exports/", "j1")


def test_the_prefix_is_the_root_then_the_job_id() -> None:
    assert PREFIX == "exports/j1/"


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("exports/j1/out.mp4", None),
        ("exports/j1/a/b/out.mp4", None),
        ("exports/j1/..mp4", None),  # dots inside a name are a name
        ("exports/j2/out.mp4", "is not inside 'exports/j1/'"),
        ("exports/j1", "is not inside 'exports/j1/'"),
        ("exports/j10/out.mp4", "is not inside 'exports/j1/'"),
        ("exports/j1/" + "x" * MAX_OUTPUT_KEY, f"is longer than {MAX_OUTPUT_KEY} characters"),
        ("exports/j1/a\nb", "contains a control character or a backslash"),
        ("exports/j1/a\\b", "contains a control character or a backslash"),
        ("exports/j1/a\x7fb", "contains a control character or a backslash"),
        ("exports/j1/", "has an empty, '.' or '..' path segment"),
        ("exports/j1//a", "has an empty, '.' or '..' path segment"),
        ("exports/j1/./a", "has an empty, '.' or '..' path segment"),
        ("exports/j1/../j2/a", "has an empty, '.' or '..' path segment"),
        ("exports/j1/a/..", "has an empty, '.' or '..' path segment"),
    ],
)
def test_key_problem(key: str, problem: str | None) -> None:
    assert key_problem(key, PREFIX) == problem
