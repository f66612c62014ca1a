"""The limits both sides of the wire share (`jobstate.wire`): tables, no server."""

from __future__ import annotations

from typing import Any

import pytest

from jobstate.wire import JOB_ID_RE, nesting_depth


def _nested(levels: int) -> Any:
    value: Any = 1
    for level in range(levels):
        value = {"k": value} if level % 2 else [value]
    return value


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        (None, 0),
        ("text", 0),
        (3.5, 0),
        ({}, 1),
        ([], 1),
        ({"a": 1, "b": "x"}, 1),
        ({"a": {}}, 2),
        ({"a": [1, {"b": []}]}, 4),
        ([[1], [[2]], 3], 3),
        ({"shallow": 1, "deep": {"a": {"b": {}}}}, 4),
        (_nested(32), 32),
    ],
)
def test_nesting_depth_counts_levels_of_objects_and_arrays(value: Any, depth: int) -> None:
    assert nesting_depth(value) == depth


def test_nesting_depth_does_not_recurse() -> None:
    assert nesting_depth(_nested(100_000)) == 100_000  # far past Python's recursion limit


@pytest.mark.parametrize(
    ("job_id", "valid"),
    [
        ("j", True),
        ("job_1-A", True),
        ("x" * 128, True),
        ("", False),
        ("x" * 129, False),
        ("a b", False),
        ("a/b", False),
        ("..", False),
        ("jöb", False),
        ("j\n", False),
    ],
)
def test_job_ids(job_id: str, valid: bool) -> None:
    assert bool(JOB_ID_RE.fullmatch(job_id)) is valid
