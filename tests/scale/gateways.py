"""Gateway settings and browser-like clients for the scale tests.

Each gateway is a real `jobstate gateway` subprocess (`support.processes.GatewayProcess`)
configured only through its command line and environment, as in production; sockets are
aiohttp WebSocket clients whose messages are pumped into a list.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
from support.processes import GatewayProcess

from gateway.auth import CallbackAuth, UserAuth

JWT_SECRET = "scale-test-jwt-secret-that-is-long-enough-for-hs256"
CALLBACK_SECRET = "scale-test-callback-secret-that-is-long-enough"
WAIT = 30.0


def gateway_env(**extra: str) -> dict[str, str]:
    """Production settings with the shared secrets every gateway of a cluster must have."""
    return {
        "ENVIRONMENT": "production",
        "JOBSTATE_JWT_SECRET": JWT_SECRET,
        "JOBSTATE_CALLBACK_SECRET": CALLBACK_SECRET,
        # The simulated worker stays out of the way unless a test wants it to run.
        "GATEWAY_SIMULATED_WORKER": "1",
        "SIMWORKER_STEP_SECONDS": "3600",
        **extra,
    }


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {UserAuth(JWT_SECRET).mint(user)}"}


class Browser:
    """What a browser tab does: one HTTP session, WebSockets pumped into lists."""

    def __init__(self, http: aiohttp.ClientSession, user: str = "u1") -> None:
        self.http = http
        self.user = user
        self.sockets: list[Socket] = []

    async def start_job(self, gateway: GatewayProcess, params: dict[str, Any]) -> str:
        async with self.http.post(
            f"{gateway.url}/api/export/overlay/start", json=params, headers=bearer(self.user)
        ) as response:
            body = await response.json()
            assert response.status == 200, body
            return str(body["job_id"])

    async def get(self, gateway: GatewayProcess, path: str) -> tuple[int, Any]:
        async with self.http.get(gateway.url + path, headers=bearer(self.user)) as response:
            return response.status, await response.json()

    async def socket(self, gateway: GatewayProcess, job_id: str, **query: str) -> Socket:
        token = UserAuth(JWT_SECRET).mint(self.user)
        ws = await self.http.ws_connect(
            f"{gateway.url}/api/jobs/{job_id}/ws", params={"token": token, **query}
        )
        sock = Socket(ws)
        self.sockets.append(sock)
        return sock

    async def close(self) -> None:
        for sock in self.sockets:
            await sock.close()


async def callback(
    http: aiohttp.ClientSession, gateway: GatewayProcess, job_id: str, body: dict[str, Any]
) -> tuple[int, Any]:
    """What RunPod's worker does: POST the job's callback URL, token included."""
    params = {"token": CallbackAuth(CALLBACK_SECRET).token(job_id)}
    url = f"{gateway.url}/api/jobs/{job_id}/do"
    async with http.post(url, json=body, params=params) as response:
        return response.status, await response.json()


class Socket:
    """A WebSocket whose JSON messages are collected; `closed` resolves to the close code."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self.closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(message.data))
                self._changed.set()
        self.closed.set_result(self.ws.close_code)
        self._changed.set()

    @property
    def versions(self) -> list[int]:
        return [m["version"] for m in self.messages if "version" in m]

    async def until_version(self, version: int, within: float = WAIT) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not (self.versions and self.versions[-1] >= version):
            if self.closed.done():
                raise AssertionError(
                    f"socket closed ({self.closed.result()}) at versions {self.versions}"
                )
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"socket got {self.versions}, not {version}, in {within} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return list(self.messages)

    async def close_code(self, within: float = WAIT) -> int | None:
        return await asyncio.wait_for(asyncio.shield(self.closed), within)

    async def close(self) -> None:
        await self.ws.close()
        await self._task
