"""The whole path on loopback: real jobstate service, real gateway, fake RunPod, moto S3.

Nothing of ours is mocked: the service runs in-process on 127.0.0.1:0 (jobstate.server), the
gateway binds 127.0.0.1:0, the fake RunPod is an aiohttp server that records submissions and
POSTs callbacks to the URL it was given, and S3 is moto's server mode.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
from aiohttp import web
from moto.server import ThreadedMotoServer

from gateway.auth import CallbackAuth, UserAuth
from gateway.config import GatewayConfig
from gateway.server import Gateway
from jobstate.config import ServiceConfig
from jobstate.server import RunningServer, start_server

JWT_SECRET = "test-jwt-secret-that-is-long-enough-for-hs256"
CALLBACK_SECRET = "test-callback-secret-that-is-long-enough"
BUCKET = "test-exports"
S3_KEY_ID = "testing"
S3_SECRET = "testing"
WAIT = 10.0


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def eventually(predicate: Callable[[], Awaitable[bool]], within: float = WAIT) -> None:
    """Poll `predicate` until it holds, failing after `within` seconds."""
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


# --- jobstate service ----------------------------------------------------------------------


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[RunningServer]:
    config = ServiceConfig(
        listen="127.0.0.1:0",
        database_url=f"sqlite+aiosqlite:///{tmp_path}/jobstate.db",
        environment="development",
    )
    running = await start_server(config)
    yield running
    await running.stop(grace=1)


# --- S3 (moto server mode) -----------------------------------------------------------------


@dataclass
class S3:
    endpoint_url: str

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    store = S3(f"http://{host}:{port}")
    store.client().create_bucket(Bucket=BUCKET)
    yield store
    server.stop()


# --- fake RunPod ---------------------------------------------------------------------------


@dataclass
class FakeRunPod:
    """Records every request; `run_status` makes /run answer an error instead, `run_id`
    makes it answer that id instead of a fresh one, and `before_run` is awaited before /run
    answers (to hold it open, or to break something while it is in flight)."""

    url: str = ""
    requests: list[tuple[str, str, dict[str, Any] | None, str]] = field(default_factory=list)
    run_status: int = 200
    run_id: Any = None
    cancel_status: int = 200
    error_text: str = "boom"  # what /run and /cancel say when they refuse
    before_run: Callable[[], Awaitable[None]] | None = None
    submitted: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    def paths(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path, _, _ in self.requests]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        auth = request.headers.get("Authorization", "")
        self.requests.append((request.method, request.path, body, auth))
        if request.path == "/run":
            if self.before_run is not None:
                await self.before_run()
            if self.run_status != 200:
                return web.json_response({"error": self.error_text}, status=self.run_status)
            external_id = f"rp-{len(self.requests)}" if self.run_id is None else self.run_id
            assert body is not None
            await self.submitted.put({**body["input"], "id": external_id})
            return web.json_response({"id": external_id, "status": "IN_QUEUE"})
        if request.path.startswith("/cancel/"):
            if self.cancel_status != 200:
                return web.json_response({"error": self.error_text}, status=self.cancel_status)
            return web.json_response({"id": request.path.split("/")[-1], "status": "CANCELLED"})
        return web.json_response({"id": request.path.split("/")[-1], "status": "IN_PROGRESS"})

    async def next_submission(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.submitted.get(), WAIT)


@pytest.fixture
async def runpod() -> AsyncIterator[FakeRunPod]:
    fake = FakeRunPod()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


# --- the gateway and a client for it ------------------------------------------------------


@dataclass
class Stack:
    gateway: Gateway
    http: aiohttp.ClientSession
    runpod: FakeRunPod
    s3: S3

    @property
    def url(self) -> str:
        return self.gateway.url

    @staticmethod
    def token(user: str) -> str:
        return UserAuth(JWT_SECRET).mint(user)

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"}

    @staticmethod
    def callback_token(job_id: str) -> str:
        return CallbackAuth(CALLBACK_SECRET).token(job_id)

    async def start_job(self, user: str = "u1", params: dict[str, Any] | None = None) -> str:
        async with self.http.post(
            f"{self.url}/api/export/overlay/start",
            json=params or {"clip": "a"},
            headers=self.auth(user),
        ) as response:
            assert response.status == 200, await response.text()
            return (await response.json())["job_id"]

    async def callback(self, job_id: str, body: Any, token: str | None = None) -> tuple[int, Any]:
        data: Any = body if isinstance(body, bytes | str) else json.dumps(body)
        if isinstance(data, bytes):
            data = io.BytesIO(data)
        url = f"{self.url}/api/jobs/{job_id}/do"
        params = {"token": self.callback_token(job_id) if token is None else token}
        async with self.http.post(url, data=data, params=params) as response:
            return response.status, await response.json()

    async def get(self, path: str, user: str | None = "u1", **kw: Any) -> tuple[int, Any]:
        headers = self.auth(user) if user else {}
        async with self.http.get(self.url + path, headers=headers, **kw) as response:
            return response.status, await response.json()

    async def post(self, path: str, user: str | None = "u1", **kw: Any) -> tuple[int, Any]:
        headers = {**(self.auth(user) if user else {}), **kw.pop("headers", {})}
        async with self.http.post(self.url + path, headers=headers, **kw) as response:
            return response.status, await response.json()

    async def version(self, job_id: str, user: str = "u1") -> int:
        status, body = await self.get(f"/api/jobs/{job_id}", user)
        assert status == 200, body
        return body["version"]

    async def socket(self, job_id: str, user: str = "u1", **params: Any) -> WsClient:
        query = {"token": self.token(user), **{k: str(v) for k, v in params.items()}}
        ws = await self.http.ws_connect(f"{self.url}/api/jobs/{job_id}/ws", params=query)
        return WsClient(ws)


class WsClient:
    """A socket whose messages are pumped into a queue; `closed` records the close code."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed = asyncio.get_running_loop().create_future()
        self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                await self.queue.put(json.loads(message.data))
        self.closed.set_result(self.ws.close_code)

    async def next(self, within: float = WAIT) -> dict[str, Any]:
        return await asyncio.wait_for(self.queue.get(), within)

    async def until(self, version: int) -> list[dict[str, Any]]:
        """Every message up to and including `version`."""
        received = []
        while not received or received[-1].get("version", 0) < version:
            received.append(await self.next())
        return received

    async def close_code(self, within: float = WAIT) -> int | None:
        return await asyncio.wait_for(asyncio.shield(self.closed), within)

    async def nothing_more(self, wait: float = 0.2) -> None:
        with pytest.raises(TimeoutError):
            extra = await asyncio.wait_for(self.queue.get(), wait)
            raise AssertionError(f"unexpected message {extra}")

    async def close(self) -> None:
        await self.ws.close()
        await self._task


def gateway_config(service_port: int, runpod: FakeRunPod, s3: S3, **kw: Any) -> GatewayConfig:
    config = GatewayConfig(
        jwt_secret=JWT_SECRET,
        callback_secret=CALLBACK_SECRET,
        host="127.0.0.1",
        port=0,
        jobstate_target=f"127.0.0.1:{service_port}",
        environment="production",
        runpod_endpoint_url=runpod.url,
        runpod_api_key="rp-key",
        r2_endpoint_url=s3.endpoint_url,
        r2_access_key_id=S3_KEY_ID,
        r2_secret_access_key=S3_SECRET,
        r2_bucket=BUCKET,
        rpc_timeout=10.0,
        runpod_timeout=10.0,
        sim_step_seconds=0.01,
    )
    return replace(config, **kw)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def make_stack(
    service: RunningServer, runpod: FakeRunPod, s3: S3, http: aiohttp.ClientSession
) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    gateways: list[Gateway] = []

    async def make(**kw: Any) -> Stack:
        gateway = Gateway(gateway_config(service.port, runpod, s3, **kw))
        await gateway.start()
        gateways.append(gateway)
        return Stack(gateway, http, runpod, s3)

    yield make
    for gateway in gateways:
        await gateway.stop()


@pytest.fixture
async def stack(make_stack: Callable[..., Awaitable[Stack]]) -> Stack:
    return await make_stack()
