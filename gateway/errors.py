"""Errors the gateway answers with, in one place: its own and the service's.

The gateway's own errors (`GatewayError`) each know their HTTP status. The service's
(`jobstate.errors`, raised by `jobstate.client`) become an HTTP status and a WebSocket close
code through one table, `SERVICE_ANSWERS`, looked up along the error's MRO: a subclass the
table does not name (`DeadlineExceeded`, or one newer than this gateway) is answered as its
nearest ancestor that it does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from jobstate import errors as service

log = logging.getLogger(__name__)

CLOSE_NOT_FOUND = 4404
CLOSE_TRY_AGAIN = 1013
CLOSE_INTERNAL = 1011
UNAVAILABLE = "the jobstate service is unavailable; try again shortly"
REFUSED = (
    "the jobstate service refused this process's service token (UNAUTHENTICATED): "
    "set JOBSTATE_API_TOKEN to the token the service was started with"
)


class GatewayError(Exception):
    """Root of the gateway's own errors: `str(error)` is the `{"error": ...}` text; keyword
    arguments become further fields of the body (e.g. the `job_id` a failed start created)."""

    status = 500

    def __init__(self, message: str, **fields: str) -> None:
        super().__init__(message)
        self.fields = fields

    def headers(self) -> dict[str, str]:
        """Extra response headers (e.g. `Retry-After`)."""
        return {}


class BadRequest(GatewayError):
    status = 400


class NotFound(GatewayError):
    status = 404


class Conflict(GatewayError):
    status = 409


class PayloadTooLarge(GatewayError):
    status = 413


class TooManyRequests(GatewayError):
    """429: an abuse limit; `retry_after` whole seconds go into the `Retry-After` header."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class BadGateway(GatewayError):
    status = 502


class ServiceUnavailable(GatewayError):
    status = 503


@dataclass(frozen=True, slots=True)
class Answer:
    """How one kind of service error reaches the person who asked.

    `text` is the `{"error": ...}` text, or None for the service's own message (written for
    the person who made the request); `reason` goes with `close_code` in the close frame.
    """

    status: int
    close_code: int
    text: str | None
    reason: str


_WATCH_FAILED = "watch failed"
_RECONNECT = "jobstate unavailable; reconnect"

SERVICE_ANSWERS: dict[type[service.JobStateError], Answer] = {
    service.NotFound: Answer(404, CLOSE_NOT_FOUND, "job not found", "job not found"),
    service.InvalidArgument: Answer(400, CLOSE_INTERNAL, None, _WATCH_FAILED),
    service.FailedPrecondition: Answer(409, CLOSE_INTERNAL, None, _WATCH_FAILED),
    service.AlreadyExists: Answer(409, CLOSE_INTERNAL, None, _WATCH_FAILED),
    service.ResourceExhausted: Answer(
        429, CLOSE_TRY_AGAIN, None, "too many watch streams; reconnect later"
    ),
    # The service refused our JOBSTATE_API_TOKEN: the gateway is misconfigured, which the
    # caller can only wait out, like an outage (`report` logs it, naming the variable).
    service.Unauthenticated: Answer(503, CLOSE_TRY_AGAIN, UNAVAILABLE, _RECONNECT),
    service.Unavailable: Answer(503, CLOSE_TRY_AGAIN, UNAVAILABLE, _RECONNECT),
    # Internal, and anything this table does not know: nothing of it reaches users.
    service.JobStateError: Answer(500, CLOSE_INTERNAL, "internal error", _WATCH_FAILED),
}


def service_answer(error: service.JobStateError) -> Answer:
    """The table's row for `error`: its class's, or its nearest ancestor's."""
    for cls in type(error).__mro__:
        answer = SERVICE_ANSWERS.get(cls)
        if answer is not None:
            return answer
    raise TypeError(f"{type(error).__name__} is not a jobstate error")


def error_text(error: service.JobStateError) -> str:
    """The `{"error": ...}` text for a service error: its own message only where the table
    says it was written for users."""
    return service_answer(error).text or str(error)


def report(where: str, error: service.JobStateError) -> Answer:
    """`service_answer`, logging what an operator has to act on: a refused service token
    (naming JOBSTATE_API_TOKEN, never the token) and errors nobody can explain (500)."""
    answer = service_answer(error)
    if isinstance(error, service.Unauthenticated):
        log.error("%s: %s", where, REFUSED)
    elif answer.status == 500:
        log.error("%s: jobstate answered %s: %s", where, type(error).__name__, error)
    return answer
