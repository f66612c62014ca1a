"""The multiplexed socket's protocol as a pure table: client frames in, requests or errors out."""

from __future__ import annotations

import pytest

from gateway.muxproto import (
    MAX_REASON,
    Ping,
    ProtocolError,
    Subscribe,
    SubscribeFeed,
    Unsubscribe,
    UnsubscribeFeed,
    parse,
    reason,
)


@pytest.mark.parametrize(
    ("frame", "request_"),
    [
        ('{"type":"ping"}', Ping()),
        ('{"type":"ping","id":7}', Ping()),  # extra keys are ignored
        ('{"type":"subscribe","job_id":"j1"}', Subscribe("j1", None)),
        ('{"type":"subscribe","job_id":"j1","after":null}', Subscribe("j1", None)),
        ('{"type":"subscribe","job_id":"j1","after":0}', Subscribe("j1", 0)),
        (
            '{"type":"subscribe","job_id":"j1","after":18446744073709551615}',
            Subscribe("j1", 2**64 - 1),
        ),
        ('{"type":"subscribe","job_id":"bad!id"}', Subscribe("bad!id", None)),  # 4404 later
        ('{"type":"unsubscribe","job_id":"j1"}', Unsubscribe("j1")),
        ('{"type":"subscribe","jobs":"mine"}', SubscribeFeed()),
        ('{"type":"unsubscribe","jobs":"mine"}', UnsubscribeFeed()),
    ],
)
def test_protocol_messages(frame: str, request_: object) -> None:
    assert parse(frame) == request_


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        ("", "message is not valid JSON"),
        ("null", "message must be a JSON object"),
        ('{"type":1}', "message needs a string type"),
        ('{"type":"' + "x" * 100 + '"}', "unknown message type '" + "x" * 32 + "…'"),
        ('{"type":"unsubscribe"}', "unsubscribe needs a job_id: a string of 1 to 128 characters"),
        ('{"type":"subscribe","job_id":""}', "subscribe needs a job_id"),
        ('{"type":"subscribe","job_id":"a","after":"1"}', "after must be a version number"),
        ('{"type":"subscribe","job_id":"a","after":1e3}', "after must be a version number"),
        ('{"type":"subscribe","jobs":"mine","job_id":"a"}', 'jobs must be "mine"'),
        ('{"type":"subscribe","job_id":"\\ud800"}', "message is not valid JSON: a string"),
        ('{"type":"ping","x":Infinity}', "message is not valid JSON"),
    ],
)
def test_anything_else_is_a_protocol_error_saying_why(frame: str, why: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse(frame)
    assert str(refused.value).startswith(why)


def test_a_close_reason_fits_a_close_frame() -> None:
    assert reason("short") == b"short"
    long = reason("é" * 200)
    assert len(long) <= MAX_REASON and long.endswith(b"...")
    long.decode()  # cut on a character boundary
