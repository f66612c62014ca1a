"""Hostile bodies and query values: always a 4xx (or close 4400) naming the problem, nothing
changes, and the job's sockets do not notice."""

from __future__ import annotations

import io

import pytest
from gwstack import Stack
from support.poll import eventually

from jobstate.wire import MAX_PARAMS_DEPTH

START = "/api/export/overlay/start"


def nested(depth: int) -> bytes:
    """An object `depth` levels deep: {"a":{"a":...{}}}."""
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
        (b'{"a":' + b"[" * 30_000 + b"]" * 30_000 + b"}", "nested too deeply"),
        (nested(101), "params are nested too deeply"),  # json parses it; protobuf cannot hold it
        # protobuf builds it, the service stores it, and no one could ever read the job back
        (nested(MAX_PARAMS_DEPTH + 1), "params are nested too deeply"),
        (b'{"a":' + b"[" * MAX_PARAMS_DEPTH + b"]" * MAX_PARAMS_DEPTH + b"}", "nested too"),
        (b'{"a":1' + b"0" * 400 + b"}", "params hold a number too large"),
        (b'{"a":"\\ud800"}', "unpaired surrogate"),
        (b'{"\\udfff":1}', "unpaired surrogate"),
        (b'{"a":"\xed\xa0\x80"}', "unpaired surrogate"),  # a surrogate encoded as UTF-8 bytes
    ],
)
async def test_a_start_the_service_cannot_hold_is_400_and_creates_nothing(
    stack: Stack, body: bytes, reason: str
) -> None:
    status, answer = await stack.post(START, "hostile", data=io.BytesIO(body))
    assert status == 400 and reason in answer["error"], (status, answer)
    assert await stack.get("/api/jobs", "hostile") == (200, {"jobs": [], "next_page_token": ""})
    assert stack.runpod.paths() == []


async def test_params_at_the_limits_start_and_the_job_can_be_read_back(stack: Stack) -> None:
    deep = nested(MAX_PARAMS_DEPTH - 1)
    params = b'{"deep":' + deep + b',"emoji":"\\ud83d\\ude00","big":' + b"9" * 300 + b"}"
    status, answer = await stack.post(START, data=io.BytesIO(params))
    assert (status, answer["status"]) == (200, "processing"), answer
    status, listed = await stack.get("/api/jobs")
    assert status == 200 and [job["job_id"] for job in listed["jobs"]] == [answer["job_id"]]
    ws = await stack.socket(answer["job_id"])
    assert (await ws.next())["type"] == "status"
    await ws.close()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
        (b'{"status":"progress","progress":1,"x":' + b"[" * 30_000 + b"]" * 30_000 + b"}", "deep"),
        (b'{"status":"progress","progress":5,"message":"\\ud800"}', "unpaired surrogate"),
        (b'{"status":"error","error":"\\udc00x"}', "unpaired surrogate"),
        (b'{"status":"IN_PROGRESS","id":"rp-\\udbff"}', "unpaired surrogate"),
    ],
)
async def test_a_malformed_callback_is_400_changes_nothing_and_sockets_see_nothing(
    stack: Stack, body: bytes, reason: str
) -> None:
    job_id = await stack.start_job()
    watcher = await stack.socket(job_id)
    assert (await watcher.next())["version"] == 2
    status, answer = await stack.callback(job_id, body)
    assert status == 400 and reason in answer["error"], (status, answer)
    assert await stack.version(job_id) == 2
    status, _ = await stack.callback(job_id, {"status": "progress", "progress": 10})
    assert status == 200
    message = await watcher.next()  # the next thing the socket sees is the real change
    assert (message["type"], message["version"]) == ("progress", 3)
    await watcher.close()


@pytest.mark.parametrize("after", [str(2**64), "99999999999999999999", "1e3", "-1", "٣", "0x10"])
async def test_an_after_that_is_not_a_uint64_closes_4400(stack: Stack, after: str) -> None:
    job_id = await stack.start_job()
    ws = await stack.socket(job_id, after=after)
    assert await ws.close_code() == 4400
    assert ws.queue.empty()


async def test_a_hostile_after_disturbs_no_other_socket_of_the_job(stack: Stack) -> None:
    job_id = await stack.start_job()
    hub = stack.services.hub
    refused = await stack.socket(job_id, after=2**64)  # the first socket of the job
    assert await refused.close_code() == 4400
    # The largest version there is: valid, but the job will never reach it.
    beyond = await stack.socket(job_id, after=2**64 - 1)

    async def joined() -> bool:
        return hub.watchers(job_id) == 1

    await eventually(joined, "the socket with the largest `after` to join the hub")
    other = await stack.socket(job_id)
    message = await other.next()
    assert (message["type"], message["version"]) == ("status", 2)
    status, _ = await stack.callback(job_id, {"status": "progress", "progress": 10})
    assert status == 200
    assert (await other.next())["version"] == 3
    await beyond.nothing_more(0.1)
    assert not beyond.closed.done()
    for ws in (other, beyond):
        await ws.close()
