"""What a RunPod status body says, read in one place. Pure: no I/O.

RunPod's webhook (POSTed to a job's callback URL) and its `GET /status/{id}` answer have the
same shape: `{"id", "status", "output": {"output_key"}, "error"}`. `read_status` turns one
into a typed reading; the callback route and the reconciler each decide what to do with it
(e.g. the reconciler shows users none of RunPod's own text, a callback's FAILED shows the
worker's message).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.outputs import key_problem
from gateway.worker import is_external_id
from jobstate.domain import Cancel, Complete, Fail
from jobstate.wire import MAX_ERROR

RUNNING = frozenset({"IN_QUEUE", "IN_PROGRESS"})
TIMED_OUT = "the RunPod job timed out"
CANCELLED = "cancelled on RunPod"


class Unreadable(ValueError):
    """A body that is no RunPod status at all; the message names the field."""


@dataclass(frozen=True, slots=True)
class Running:
    """IN_QUEUE / IN_PROGRESS: RunPod has the job. `external_id` is "" when the body names
    none."""

    external_id: str


@dataclass(frozen=True, slots=True)
class Finished:
    """COMPLETED with a usable output, TIMED_OUT or CANCELLED: the change it asks for."""

    change: Complete | Fail | Cancel


@dataclass(frozen=True, slots=True)
class Failed:
    """FAILED, with the worker's own message ("" when it gave none), cut to what a job holds."""

    error: str


@dataclass(frozen=True, slots=True)
class NoOutput:
    """COMPLETED without `output.output_key`."""


@dataclass(frozen=True, slots=True)
class RefusedOutput:
    """COMPLETED with an output key that is not the job's to claim; `problem` is a phrase
    ("is not inside 'exports/j/'")."""

    problem: str


@dataclass(frozen=True, slots=True)
class UnknownStatus:
    """A status this gateway does not know."""

    status: str


Reading = Running | Finished | Failed | NoOutput | RefusedOutput | UnknownStatus


def read_status(body: Mapping[str, Any], prefix: str) -> Reading:
    """The reading of one RunPod status body. `prefix` is the job's own output_prefix: an
    output key must be inside it. Raises Unreadable when `status` is not a string or `id`
    (when given) is not a plain RunPod job id."""
    status = body.get("status")
    if not isinstance(status, str):
        raise Unreadable("status must be a string")
    external_id = body.get("id")
    if external_id is not None and not is_external_id(external_id):
        raise Unreadable("id must be a RunPod job id ([A-Za-z0-9_-], at most 128 characters)")
    if status in RUNNING:
        return Running(external_id or "")
    if status == "COMPLETED":
        return _completed(body.get("output"), prefix)
    if status == "FAILED":
        error = body.get("error")
        return Failed(error.replace("\x00", "")[:MAX_ERROR] if isinstance(error, str) else "")
    if status == "TIMED_OUT":
        return Finished(Fail(TIMED_OUT))
    if status == "CANCELLED":
        return Finished(Cancel(CANCELLED))
    return UnknownStatus(status)


def _completed(output: Any, prefix: str) -> Reading:
    key = output.get("output_key") if isinstance(output, dict) else None
    if key is None:
        return NoOutput()
    if not isinstance(key, str) or not key:
        return RefusedOutput("must be a non-empty string")
    problem = key_problem(key, prefix)
    return RefusedOutput(problem) if problem else Finished(Complete(key))
