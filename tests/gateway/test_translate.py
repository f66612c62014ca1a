"""Records to the gateway's JSON (pinned byte for byte), strict JSON, and the auth
primitives."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import jwt
import pytest

from gateway.auth import CallbackAuth, Unauthorized, UserAuth
from gateway.translate import InvalidJSON, dumps, event_message, is_number, job_json, loads
from jobstate.client import EventType, Job, JobEvent, Status

CREATED = datetime(2026, 11, 30, 12, 0, 1, 234567, tzinfo=UTC)
CHANGED = datetime(2026, 11, 30, 12, 5, tzinfo=UTC)
RUNNING = Job(
    job_id="j-1",
    user_id="u1",
    kind="overlay",
    status=Status.PROCESSING,
    progress=42.5,
    message="Rendering (4/10)",
    output_key="",
    error="",
    version=7,
    params={"fps": 30},
    external_id="rp-1",
    created_at=CREATED,
    updated_at=CHANGED,
)
DONE = replace(
    RUNNING,
    status=Status.COMPLETE,
    progress=100.0,
    output_key="exports/j-1/a b.mp4",
    version=8,
    completed_at=CHANGED,
)
FAILED = replace(RUNNING, status=Status.ERROR, error="ffmpeg exited 1", version=8)
CANCELLED = replace(RUNNING, status=Status.CANCELLED, error="by the user", version=8)
TIMES = '"created_at":"2026-11-30T12:00:01.234Z","updated_at":"2026-11-30T12:05:00.000Z"'
URL = '"output_url":"/api/storage/presigned-url?key=exports%2Fj-1%2Fa%20b.mp4"'


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            JobEvent(EventType.SNAPSHOT, RUNNING),
            '{"type":"status","job_id":"j-1","kind":"overlay","status":"processing",'
            '"progress":42.5,"message":"Rendering (4/10)","output_key":"","error":"",'
            f'"version":7,{TIMES},"completed_at":null}}',
        ),
        (
            JobEvent(EventType.SUBMITTED, RUNNING),
            '{"type":"status","job_id":"j-1","kind":"overlay","status":"processing",'
            '"progress":42.5,"message":"Rendering (4/10)","output_key":"","error":"",'
            f'"version":7,{TIMES},"completed_at":null}}',
        ),
        (
            JobEvent(EventType.PROGRESS, RUNNING),
            '{"type":"progress","job_id":"j-1","version":7,"status":"processing",'
            '"progress":42.5,"message":"Rendering (4/10)"}',
        ),
        (
            JobEvent(EventType.COMPLETE, DONE),
            '{"type":"complete","job_id":"j-1","version":8,"status":"complete",'
            f'"progress":100.0,"output_key":"exports/j-1/a b.mp4",{URL}}}',
        ),
        (
            JobEvent(EventType.ERROR, FAILED),
            '{"type":"error","job_id":"j-1","version":8,"status":"error",'
            '"error":"ffmpeg exited 1"}',
        ),
        (
            JobEvent(EventType.CANCELLED, CANCELLED),
            '{"type":"cancelled","job_id":"j-1","version":8,"status":"cancelled",'
            '"error":"by the user"}',
        ),
        (
            JobEvent(EventType.SNAPSHOT, DONE),
            '{"type":"status","job_id":"j-1","kind":"overlay","status":"complete",'
            '"progress":100.0,"message":"Rendering (4/10)","output_key":"exports/j-1/a b.mp4",'
            f'"error":"","version":8,{TIMES},"completed_at":"2026-11-30T12:05:00.000Z",{URL}}}',
        ),
    ],
    ids=lambda value: value.type.value if isinstance(value, JobEvent) else None,
)
def test_websocket_messages_byte_for_byte(event: JobEvent, message: str) -> None:
    assert dumps(event_message(event)) == message


def test_job_json_times_are_utc_milliseconds_with_z() -> None:
    assert job_json(DONE) == {
        "job_id": "j-1",
        "kind": "overlay",
        "status": "complete",
        "progress": 100.0,
        "message": "Rendering (4/10)",
        "output_key": "exports/j-1/a b.mp4",
        "error": "",
        "version": 8,
        "created_at": "2026-11-30T12:00:01.234Z",
        "updated_at": "2026-11-30T12:05:00.000Z",
        "completed_at": "2026-11-30T12:05:00.000Z",
    }


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", '{"a": NaN}'])
def test_strict_json_refuses_the_nan_family(text: str) -> None:
    with pytest.raises(ValueError):
        loads(text)


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
