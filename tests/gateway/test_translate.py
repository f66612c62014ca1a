"""The one table from gRPC status to HTTP, strict JSON, and the auth primitives."""

from __future__ import annotations

import grpc
import jwt
import pytest
from google.protobuf import json_format

from gateway.auth import CallbackAuth, Unauthorized, UserAuth
from gateway.errors import BadRequest
from gateway.translate import (
    MAX_PARAMS_DEPTH,
    InvalidJSON,
    http_error,
    is_number,
    loads,
    params_struct,
)
from jobstate.v1 import jobstate_pb2 as pb


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


def nested(levels: int, leaf: object) -> object:
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def in_lists(levels: int, leaf: object) -> object:
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    "text",
    [
        '"\\ud800"',
        '{"a":["x\\udfff"]}',
        '{"\\udc00\\ud800":1}',  # the wrong order is two unpaired halves
        b'"\xed\xa0\x80"',  # a surrogate encoded as UTF-8, which json decodes as given
        "[" * 30_000 + "]" * 30_000,
    ],
)
def test_strict_json_refuses_what_no_protobuf_string_or_parser_can_hold(
    text: str | bytes,
) -> None:
    with pytest.raises(InvalidJSON):
        loads(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('"\\ud83d\\ude00"', "\U0001f600"),  # an escaped pair is one code point
        ('"é€😀"', "é€😀"),
        (b'"\xc3\xa9"', "é"),
        ("[" * 200 + "]" * 200, in_lists(199, [])),
    ],
)
def test_strict_json_keeps_valid_text(text: str | bytes, value: object) -> None:
    assert loads(text) == value


@pytest.mark.parametrize(
    "params",
    [
        nested(MAX_PARAMS_DEPTH, 1),  # objects cost protobuf the most levels
        nested(MAX_PARAMS_DEPTH - 1, {}),
        {"l": [[[[{"x": [None, True, "s", 2.5, 1e300]}]]]]},
    ],
)
def test_params_up_to_the_depth_limit_can_be_stored_and_read_back(params: dict) -> None:
    struct = params_struct(params)
    assert json_format.MessageToDict(struct) == params
    # The deepest message that carries a job's params: it must still decode.
    event = pb.WatchJobResponse(job=pb.Job(params=struct)).SerializeToString()
    assert json_format.MessageToDict(pb.WatchJobResponse.FromString(event).job.params) == params


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        (nested(MAX_PARAMS_DEPTH + 1, 1), "nested too deeply"),
        (nested(MAX_PARAMS_DEPTH, []), "nested too deeply"),  # an empty array is a level too
        ({"a": in_lists(MAX_PARAMS_DEPTH, 1)}, "nested too deeply"),  # 1 object + 32 arrays
        ({"a": 10**400}, "number too large"),
    ],
)
def test_params_protobuf_cannot_hold_are_a_bad_request(params: dict, reason: str) -> None:
    with pytest.raises(BadRequest, match=reason):
        params_struct(params)


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
