"""The whole path on loopback: real jobstate service, real gateway, fake RunPod, moto S3.

Nothing of ours is mocked: the service runs in-process on 127.0.0.1:0 (jobstate.server), the
gateway binds 127.0.0.1:0, the fake RunPod (`support.fakerunpod`) records submissions (the test
POSTs callbacks to the URL they carry), and S3 is moto's server mode.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import aiohttp
import boto3
import pytest
from moto.server import ThreadedMotoServer
from support import servers
from support.fakerunpod import FakeRunPod

from gateway.auth import CallbackAuth, UserAuth
from gateway.config import GatewayConfig
from gateway.context import Services
from gateway.server import Gateway
from jobstate.server import RunningServer

JWT_SECRET = "test-jwt-secret-that-is-long-enough-for-hs256"
CALLBACK_SECRET = "test-callback-secret-that-is-long-enough"
BUCKET = "test-exports"
S3_KEY_ID = "testing"
S3_SECRET = "testing"
WAIT = 10.0


# --- jobstate service ----------------------------------------------------------------------


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with servers.service(tmp_path) as running:
        yield running


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


@pytest.fixture
async def runpod() -> AsyncIterator[FakeRunPod]:
    async with FakeRunPod() as fake:
        yield fake


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

    @property
    def services(self) -> Services:
        assert self.gateway.services is not None, "the gateway is started"
        return self.gateway.services

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
            return cast(str, (await response.json())["job_id"])

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
        return cast(int, body["version"])

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
        received: list[dict[str, Any]] = []
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
