"""The client's channel and the one place gRPC status codes become jobstate's errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from jobstate import errors

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    # NOTE: gRPC's reconnect back-off grows to 120 s by default; a restarted service must be
    # found again within seconds.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # Idle watch streams must survive proxies and notice a dead peer.
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    # Spread calls over every address the target resolves to (ipv4:a:1,b:2, or a dns: name
    # with several records); with one address this is the same as pick_first.
    ("grpc.lb_policy_name", "round_robin"),
]

_ERRORS: dict[grpc.StatusCode, type[errors.JobStateError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    # The service ends calls it cannot finish while shutting down: retrying elsewhere works.
    grpc.StatusCode.CANCELLED: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
}


_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def error_from_rpc(exc: grpc.aio.AioRpcError) -> errors.JobStateError:
    """The jobstate error for a failed call, carrying the server's message."""
    code = exc.code()
    cls = _ERRORS.get(code, errors.Internal)
    return cls(exc.details() or f"the call failed with {code.name}")


def error_for(code: int, message: str) -> errors.JobStateError:
    """The jobstate error for a google.rpc.Code number a result carries (ApplyChanges,
    FollowJobs)."""
    status = _BY_NUMBER.get(code, grpc.StatusCode.UNKNOWN)
    cls = _ERRORS.get(status, errors.Internal)
    return cls(message or f"failed with {status.name}")


def open_channel(target: str, tls_ca: str | Path | None = None) -> grpc.aio.Channel:
    """A channel to `target` (any gRPC target: host:port, ipv4:a:1,b:2, dns:///name:port);
    TLS that trusts only the PEM bundle `tls_ca` when given. Raises OSError if it cannot be
    read."""
    if tls_ca:
        credentials = grpc.ssl_channel_credentials(Path(tls_ca).read_bytes())
        return grpc.aio.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
