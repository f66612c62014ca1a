"""JOBSTATE_API_TOKEN: the gateway sends `authorization: Bearer <token>` on every RPC, and a
gateway whose token the service refuses says so: /healthz is 503 (grpc health alone is open to
everyone, so it cannot tell), every route answers 503 (never 500), sockets close with 1013, and
the log names JOBSTATE_API_TOKEN without ever showing a token."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from gwstack import S3, Stack, gateway_config
from support.fakerunpod import FakeRunPod

from gateway.server import Gateway
from jobstate.config import ServiceConfig
from jobstate.server import RunningServer, start_server

TOKEN = "service-token-0123456789-abcdefghijklmnop"
WRONG = "wrong-token-0123456789-abcdefghijklmnopqrs"


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[RunningServer]:
    service = await start_server(
        ServiceConfig(
            listen="127.0.0.1:0",
            database_url=f"sqlite+aiosqlite:///{tmp_path}/jobstate.db",
            environment="development",
            api_token=TOKEN,
        )
    )
    yield service
    await service.stop(grace=1)


async def answers(stack: Stack, job_id: str) -> dict[str, int | None]:
    """What every route answers on this gateway, for a job that exists."""
    ws = await stack.http.ws_connect(
        f"{stack.url}/api/jobs/{job_id}/ws", params={"token": stack.token("u1")}
    )
    message = await ws.receive()
    socket = ws.close_code if ws.closed else message.json()["type"]
    await ws.close()
    async with stack.http.get(f"{stack.url}/healthz") as response:
        health = response.status
    progress = {"status": "progress", "progress": 1}
    return {
        "healthz": health,
        "start": (await stack.post("/api/export/overlay/start", json={}))[0],
        "list": (await stack.get("/api/jobs"))[0],
        "get": (await stack.get(f"/api/jobs/{job_id}"))[0],
        "callback": (await stack.callback(job_id, progress))[0],
        "cancel": (await stack.post(f"/api/jobs/{job_id}/cancel"))[0],
        "download": (await stack.get("/api/storage/presigned-url?key=exports/x"))[0],
        "socket": socket,
    }


async def test_a_refused_service_token_is_503_everywhere_and_logged_by_name(
    guarded: RunningServer,
    runpod: FakeRunPod,
    s3: S3,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    gateways: list[Gateway] = []
    try:
        stacks = {}
        for name, token in (("right", TOKEN), ("none", ""), ("wrong", WRONG)):
            gateway = Gateway(gateway_config(guarded.port, runpod, s3, api_token=token))
            await gateway.start()
            gateways.append(gateway)
            stacks[name] = Stack(gateway, http, runpod, s3)
        job_id = await stacks["right"].start_job()
        results = {name: await answers(stack, job_id) for name, stack in stacks.items()}
    finally:
        for gateway in gateways:
            await gateway.stop()
    refused = {
        "healthz": 503,
        "start": 503,
        "list": 503,
        "get": 503,
        "cancel": 503,
        "callback": 503,
        "download": 503,
        "socket": 1013,
    }
    assert results == {
        "right": {**dict.fromkeys(refused, 200), "download": 404, "socket": "status"},
        "none": refused,
        "wrong": refused,
    }
    named = [r for r in caplog.records if "JOBSTATE_API_TOKEN" in r.getMessage()]
    assert named and all(r.levelno == logging.ERROR for r in named)
    assert TOKEN not in caplog.text and WRONG not in caplog.text
    assert "internal error" not in caplog.text
