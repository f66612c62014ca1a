"""Arbitrary JSON and bytes at the gateway's callback and start endpoints, arbitrary frames at
a job's WebSocket (hypothesis), against a real gateway, a real service and a fake RunPod.

Cases a run (fixed): callback 100 JSON + 60 bytes, start 100 JSON + 60 bytes, WebSocket 60
(each up to 5 frames) + 40 `after` values — 420 in all. Strings include unpaired surrogates,
bodies include nesting up to 32,000 deep. Properties:
- never a 5xx; a refused request (4xx) changes nothing: the job keeps its version, a refused
  start creates no job;
- a socket survives whatever the client sends (≤ 64 KiB a frame): `ping` still gets `pong`;
- an `after` that is not a uint64 closes its socket 4400, any other leaves it working, and
  neither keeps a second socket of the job from its `status`;
- the gateway and the service are healthy afterwards.
Everything runs on one event loop in a thread of its own; hypothesis drives it synchronously.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import grpc
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support.fakerunpod import FakeRunPod
from support.servers import sqlite_url

from gateway.auth import CallbackAuth, UserAuth
from gateway.config import GatewayConfig
from gateway.server import Gateway
from jobstate.config import ServiceConfig
from jobstate.server import RunningServer, start_server
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

T = TypeVar("T")
JWT_SECRET = "fuzz-jwt-secret-that-is-long-enough-for-hs256!"
CALLBACK_SECRET = "fuzz-callback-secret-that-is-long-enough"
SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_ids = itertools.count()


class Stack:
    """Service + gateway + fake RunPod + an HTTP session, on a loop in a background thread."""

    def __init__(self, directory: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="fuzz-gateway", daemon=True
        )
        self.thread.start()
        self.run(self._start(directory))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def _start(self, directory: Path) -> None:
        self.service: RunningServer = await start_server(
            ServiceConfig(
                listen="127.0.0.1:0",
                database_url=sqlite_url(directory),
                environment="development",
            )
        )
        self.runpod = FakeRunPod()
        await self.runpod.start()
        self.gateway = Gateway(
            GatewayConfig(
                jwt_secret=JWT_SECRET,
                callback_secret=CALLBACK_SECRET,
                port=0,
                jobstate_target=f"127.0.0.1:{self.service.port}",
                runpod_endpoint_url=self.runpod.url,
                runpod_api_key="rp-key",
            )
        )
        await self.gateway.start()
        self.url = self.gateway.url
        self.http = aiohttp.ClientSession()
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.service.port}")
        self.stub = pb_grpc.JobStateServiceStub(self.channel)

    async def _stop(self) -> None:
        await self.http.close()
        await self.channel.close()
        await self.gateway.stop()
        await self.runpod.close()
        await self.service.stop(grace=1)

    def close(self) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()

    # --- helpers run on the stack's loop ---

    async def job(self, user: str, status: str) -> pb.Job:
        """A job of `user` in `status` (pending, processing or complete)."""
        job_id = f"gz-{next(_ids)}"
        job = (await self.stub.CreateJob(pb.CreateJobRequest(job_id=job_id, user_id=user))).job
        if status != "pending":
            submitted = pb.MarkSubmittedRequest(job_id=job_id, external_id="rp-x")
            job = (await self.stub.MarkSubmitted(submitted)).job
        if status == "complete":
            completed = pb.CompleteJobRequest(job_id=job_id, output_key="exports/done.mp4")
            job = (await self.stub.CompleteJob(completed)).job
        return job

    async def version(self, job_id: str) -> int:
        return (await self.stub.GetJob(pb.GetJobRequest(job_id=job_id))).job.version

    async def count(self, user: str) -> int:
        reply = await self.stub.ListJobs(pb.ListJobsRequest(user_id=user, page_size=500))
        return len(reply.jobs)

    async def post(self, path: str, body: bytes, **kw: Any) -> int:
        async with self.http.post(self.url + path, data=body, **kw) as response:
            await response.read()
            return response.status


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("gwfuzz"))
    try:
        yield stack

        async def healthy() -> int:
            async with stack.http.get(stack.url + "/healthz") as response:
                return response.status

        assert stack.run(healthy()) == 200
    finally:
        stack.close()


# Surrogates included: "\ud800" is valid JSON text but no protobuf string can hold it.
texts = st.text(st.characters(exclude_categories=()), max_size=30) | st.sampled_from(
    ["\ud800", "x\udfff", "\udbff\udc00", "\udc00\ud800"]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=15,
)
statuses = st.sampled_from(
    ["progress", "complete", "error", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT",
     "IN_QUEUE", "IN_PROGRESS", "", "PROGRESS", "unknown"]
)  # fmt: skip
callback_objects = st.fixed_dictionaries(
    {"status": statuses | st.text(max_size=10)},
    optional={
        "progress": st.floats() | st.integers() | st.booleans() | st.text(max_size=5),
        "message": texts | st.integers(),
        "output_key": st.sampled_from(["exports/ok.mp4", "exports/", "other/x", ""])
        | st.text(max_size=30)
        | st.none(),
        "error": texts | st.none() | st.integers(),
        "id": texts | st.none(),
        "output": json_values
        | st.fixed_dictionaries({"output_key": st.sampled_from(["exports/r.mp4", "x/y"])}),
    },
)
json_bodies = st.one_of(callback_objects, json_values).map(
    lambda v: json.dumps(v).encode()  # NaN/Infinity included: the gateway must refuse them
)
NUMBERS = [b"NaN", b"Infinity", b"-Infinity", b"1e999"]
raw_bodies = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"", b"{", b"[]", b"null", b'{"status":"progress","progress":1e999}']),
    st.sampled_from(NUMBERS).map(lambda n: b'{"status":"progress","progress":' + n + b"}"),
    st.integers(64 * 1024 - 10, 64 * 1024 + 10).map(lambda n: b'{"a":"' + b"x" * n + b'"}'),
    # Deep nesting: json's recursion limit, protobuf's, and whatever lies between.
    st.integers(1, 32_000).map(lambda n: b'{"status":"progress","a":' + b"[" * n + b"]" * n + b"}"),
    st.integers(1, 200).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)
job_states = st.sampled_from(["pending", "processing", "complete"])


def _check_callback(stack: Stack, body: bytes, state: str) -> None:
    job = stack.run(stack.job("u1", state))
    token = CallbackAuth(CALLBACK_SECRET).token(job.job_id)
    status = stack.run(stack.post(f"/api/jobs/{job.job_id}/do", body, params={"token": token}))
    event(f"callback answered {status}")
    assert status < 500, (status, body[:200])
    if status >= 400:
        assert stack.run(stack.version(job.job_id)) == job.version, (status, body[:200])


@settings(SETTINGS, max_examples=100)
@given(body=json_bodies, state=job_states)
def test_callback_json(stack: Stack, body: bytes, state: str) -> None:
    _check_callback(stack, body, state)


@settings(SETTINGS, max_examples=60)
@given(body=raw_bodies, state=job_states)
def test_callback_bytes(stack: Stack, body: bytes, state: str) -> None:
    _check_callback(stack, body, state)


def _check_start(stack: Stack, body: bytes, content_type: str) -> None:
    user = f"starter-{next(_ids)}"
    headers = {
        "Authorization": f"Bearer {UserAuth(JWT_SECRET).mint(user)}",
        "Content-Type": content_type,
    }
    status = stack.run(stack.post("/api/export/overlay/start", body, headers=headers))
    event(f"start answered {status}")
    assert status < 500, (status, body[:200])
    created = stack.run(stack.count(user))
    assert created == (1 if status == 200 else 0), (status, body[:200])


@settings(SETTINGS, max_examples=100)
@given(body=json_bodies, content_type=st.sampled_from(["application/json", "text/plain"]))
def test_start_json(stack: Stack, body: bytes, content_type: str) -> None:
    _check_start(stack, body, content_type)


@settings(SETTINGS, max_examples=60)
@given(body=raw_bodies, content_type=st.sampled_from(["application/json", "", "x/y"]))
def test_start_bytes(stack: Stack, body: bytes, content_type: str) -> None:
    _check_start(stack, body, content_type)


frames = st.lists(
    st.one_of(
        st.text(max_size=200).map(lambda t: ("text", t)),
        st.binary(max_size=200).map(lambda b: ("binary", b)),
        json_values.map(lambda v: ("text", json.dumps(v))),
        st.sampled_from(['{"type":"ping","x":1}', '{"type":"PING"}', "ping", "{}"]).map(
            lambda t: ("text", t)
        ),
        # ("zeros", n): n zero bytes, built in the test (a repr of them would be huge).
        st.sampled_from([1024, 64 * 1024 - 1]).map(lambda n: ("zeros", n)),
    ),
    min_size=1,
    max_size=5,
)


@settings(SETTINGS, max_examples=60)
@given(sent=frames)
def test_websocket_frames(stack: Stack, sent: list[tuple[str, Any]]) -> None:
    async def scenario() -> tuple[int, list[dict[str, Any]]]:
        job = await stack.job("u1", "processing")
        token = UserAuth(JWT_SECRET).mint("u1")
        url = f"{stack.url}/api/jobs/{job.job_id}/ws"
        async with stack.http.ws_connect(url, params={"token": token}) as ws:
            first = await ws.receive_json(timeout=10)
            for kind, data in sent:
                if kind == "text":
                    await ws.send_str(data)
                else:
                    await ws.send_bytes(bytes(data) if kind == "zeros" else data)
            await ws.send_str('{"type":"ping"}')
            received = [first]
            while received[-1] != {
                "type": "pong"
            }:  # pongs to pings among the frames may come first
                message = await ws.receive(timeout=10)
                assert message.type is aiohttp.WSMsgType.TEXT, (message.type, ws.close_code)
                received.append(json.loads(message.data))
            return await stack.version(job.job_id) - job.version, received

    changed, received = stack.run(scenario())
    assert changed == 0
    assert received[0]["type"] == "status"
    assert all(m == {"type": "pong"} for m in received[1:]), received


def test_websocket_frame_of_exactly_64_kib_is_ignored(stack: Stack) -> None:
    async def scenario() -> Any:
        job = await stack.job("u1", "processing")
        token = UserAuth(JWT_SECRET).mint("u1")
        url = f"{stack.url}/api/jobs/{job.job_id}/ws"
        async with stack.http.ws_connect(url, params={"token": token}) as ws:
            await ws.receive_json(timeout=10)
            await ws.send_bytes(bytes(64 * 1024))
            await ws.send_str('{"type":"ping"}')
            message = await ws.receive(timeout=10)
            return message.type, message.data

    assert stack.run(scenario()) == (aiohttp.WSMsgType.TEXT, '{"type":"pong"}')


afters = st.one_of(
    st.integers(0, 10).map(str),
    st.integers(2**64 - 3, 2**64 + 3).map(str),
    st.integers(0, 2**80).map(str),
    st.text(max_size=25),
)


def _valid_after(after: str) -> bool:
    return after == "" or (after.isascii() and after.isdigit() and int(after) < 2**64)


@settings(SETTINGS, max_examples=40)
@given(after=afters)
def test_websocket_after(stack: Stack, after: str) -> None:
    async def scenario() -> tuple[int | None, list[str], dict[str, Any]]:
        job = await stack.job("u1", "processing")
        token = UserAuth(JWT_SECRET).mint("u1")
        url = f"{stack.url}/api/jobs/{job.job_id}/ws"
        async with stack.http.ws_connect(url, params={"token": token, "after": after}) as first:
            async with stack.http.ws_connect(url, params={"token": token}) as second:
                greeting = await second.receive_json(timeout=10)
            await first.send_str('{"type":"ping"}')
            kinds: list[str] = []
            while not kinds or kinds[-1] not in ("pong", "closed"):
                message = await first.receive(timeout=10)
                text = message.type is aiohttp.WSMsgType.TEXT
                kinds.append(json.loads(message.data)["type"] if text else "closed")
            return first.close_code, kinds, greeting

    close_code, kinds, greeting = stack.run(scenario())
    event("after " + ("valid" if _valid_after(after) else "refused"))
    assert greeting["type"] == "status"
    if _valid_after(after):
        assert kinds[-1] == "pong", (after, kinds)
    else:
        assert (kinds, close_code) == (["closed"], 4400), after
