"""Errors the gateway raises on purpose; each knows its HTTP status and is answered as JSON."""

from __future__ import annotations


class GatewayError(Exception):
    """Root of the gateway's own errors: `str(error)` is the `{"error": ...}` text; keyword
    arguments become further fields of the body (e.g. the `job_id` a failed start created)."""

    status = 500

    def __init__(self, message: str, **fields: str) -> None:
        super().__init__(message)
        self.fields = fields


class BadRequest(GatewayError):
    status = 400


class NotFound(GatewayError):
    status = 404


class Conflict(GatewayError):
    status = 409


class PayloadTooLarge(GatewayError):
    status = 413


class BadGateway(GatewayError):
    status = 502


class ServiceUnavailable(GatewayError):
    status = 503
