"""The one table from gRPC status to HTTP, strict JSON, and the auth primitives."""

from __future__ import annotations

import grpc
import jwt
import pytest

from gateway.auth import CallbackAuth, Unauthorized, UserAuth
from gateway.translate import http_error, is_number, loads


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        (grpc.StatusCode.NOT_FOUND, 404, "job not found"),
        (grpc.StatusCode.INVALID_ARGUMENT, 400, "details"),
        (grpc.StatusCode.FAILED_PRECONDITION, 409, "details"),
        (grpc.StatusCode.ALREADY_EXISTS, 409, "details"),
        (
            grpc.StatusCode.UNAVAILABLE,
            503,
            "the jobstate service is unavailable; try again shortly",
        ),
        (
            grpc.StatusCode.DEADLINE_EXCEEDED,
            503,
            "the jobstate service is unavailable; try again shortly",
        ),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "details"),
        (grpc.StatusCode.INTERNAL, 500, "internal error"),
        (
            grpc.StatusCode.UNAUTHENTICATED,
            503,
            "the jobstate service is unavailable; try again shortly",
        ),
        (grpc.StatusCode.UNKNOWN, 500, "internal error"),
    ],
)
def test_grpc_status_to_http(code: grpc.StatusCode, status: int, message: str) -> None:
    assert http_error(code, "details") == (status, message)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", '{"a": NaN}'])
def test_strict_json_refuses_the_nan_family(text: str) -> None:
    with pytest.raises(ValueError):
        loads(text)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (1, True),
        (0.5, True),
        (True, False),
        (float("inf"), False),
        (loads("1e999"), False),
        ("1", False),
        (None, False),
    ],
)
def test_is_number(value: object, ok: bool) -> None:
    assert is_number(value) is ok


def test_user_tokens() -> None:
    auth = UserAuth("k" * 64)
    assert auth.verify(auth.mint("u1")) == "u1"
    short = UserAuth("short")  # the operator's choice: works, without a warning per call
    assert short.verify(short.mint("u2")) == "u2"
    for bad in (
        "",
        "x",
        jwt.encode({"sub": 5}, "k" * 64, "HS256"),
        jwt.encode({"sub": "u"}, "k" * 64, "HS384"),
    ):
        with pytest.raises(Unauthorized):
            auth.verify(bad)


def test_callback_tokens_are_per_job_and_per_secret() -> None:
    a, b = CallbackAuth("s" * 40), CallbackAuth("t" * 40)
    a.check("job1", a.token("job1"))
    for job, token in (("job2", a.token("job1")), ("job1", b.token("job1")), ("job1", "")):
        with pytest.raises(Unauthorized):
            a.check(job, token)
