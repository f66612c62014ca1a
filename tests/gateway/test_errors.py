"""The one table from the service's errors to HTTP statuses and WebSocket close codes."""

from __future__ import annotations

import logging

import pytest

from gateway.errors import UNAVAILABLE, error_text, report, service_answer
from jobstate.client import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    JobStateError,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)


class NewerPrecondition(FailedPrecondition):
    """A subclass the table does not name: answered as its nearest ancestor."""


@pytest.mark.parametrize(
    ("error", "status", "text", "close_code"),
    [
        (NotFound("details"), 404, "job not found", 4404),
        (InvalidArgument("details"), 400, "details", 1011),
        (FailedPrecondition("details"), 409, "details", 1011),
        (NewerPrecondition("details"), 409, "details", 1011),
        (AlreadyExists("details"), 409, "details", 1011),
        (Unavailable("details"), 503, UNAVAILABLE, 1013),
        (DeadlineExceeded("details"), 503, UNAVAILABLE, 1013),
        (ResourceExhausted("details"), 429, "details", 1013),
        (Internal("details"), 500, "internal error", 1011),
        (Unauthenticated("details"), 503, UNAVAILABLE, 1013),
        (JobStateError("details"), 500, "internal error", 1011),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_service_errors_to_http_and_close_codes(
    error: JobStateError, status: int, text: str, close_code: int
) -> None:
    answer = service_answer(error)
    assert (answer.status, error_text(error), answer.close_code) == (status, text, close_code)


def test_report_names_the_variable_for_a_refused_token_and_logs_500s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.errors")
    for error in (NotFound("x"), FailedPrecondition("x"), Unavailable("x")):
        report("GET /api/jobs", error)
    assert caplog.records == []
    report("GET /api/jobs", Unauthenticated("missing or invalid service token"))
    report("GET /api/jobs", Internal("boom"))
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.ERROR,
            "GET /api/jobs: the jobstate service refused this process's service token "
            "(UNAUTHENTICATED): set JOBSTATE_API_TOKEN to the token the service was started with",
        ),
        (logging.ERROR, "GET /api/jobs: jobstate answered Internal: boom"),
    ]
