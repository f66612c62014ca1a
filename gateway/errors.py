"""Errors the gateway raises on purpose; each knows its HTTP status and is answered as JSON."""

from __future__ import annotations


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
