"""User JWTs with `aud` / `iss`: accepted when present, and checked only when the gateway is
told what to expect (JOBSTATE_JWT_AUDIENCE / JOBSTATE_JWT_ISSUER). Through a real gateway."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import pytest
from gwstack import JWT_SECRET, Stack

from gateway.config import GatewayConfig

AUDIENCE = "jobstate-gateway"
ISSUER = "https://id.example/"


def token(**claims: Any) -> str:
    return jwt.encode({"sub": "u1", "exp": int(time.time()) + 600, **claims}, JWT_SECRET)


async def status_with(stack: Stack, jwt_token: str) -> int:
    headers = {"Authorization": f"Bearer {jwt_token}"}
    async with stack.http.get(f"{stack.url}/api/jobs", headers=headers) as response:
        return response.status


async def test_aud_and_iss_are_accepted_when_nothing_is_expected(stack: Stack) -> None:
    statuses = [
        await status_with(stack, token(aud="some-api")),
        await status_with(stack, token(aud=["a", "b"])),
        await status_with(stack, token(iss="https://anyone.example/")),
        await status_with(stack, token(aud="some-api", iss="https://anyone.example/")),
        await status_with(stack, token()),
    ]
    assert statuses == [200] * 5


async def test_an_expected_audience_must_match(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack(jwt_audience=AUDIENCE)
    statuses = {
        "same": await status_with(stack, token(aud=AUDIENCE)),
        "in-a-list": await status_with(stack, token(aud=["other", AUDIENCE])),
        "other": await status_with(stack, token(aud="other")),
        "missing": await status_with(stack, token()),
    }
    assert statuses == {"same": 200, "in-a-list": 200, "other": 401, "missing": 401}


async def test_an_expected_issuer_must_match(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack(jwt_issuer=ISSUER)
    statuses = {
        "same": await status_with(stack, token(iss=ISSUER, aud="anything")),
        "other": await status_with(stack, token(iss="https://evil.example/")),
        "missing": await status_with(stack, token()),
    }
    assert statuses == {"same": 200, "other": 401, "missing": 401}


async def test_a_socket_with_the_wrong_audience_is_closed_4401(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack(jwt_audience=AUDIENCE)
    headers = {"Authorization": f"Bearer {token(aud=AUDIENCE)}"}
    async with stack.http.post(
        f"{stack.url}/api/export/overlay/start", json={}, headers=headers
    ) as response:
        job_id = (await response.json())["job_id"]
    codes = []
    for claims in ({"aud": "other"}, {"aud": AUDIENCE}):
        ws = await stack.http.ws_connect(
            f"{stack.url}/api/jobs/{job_id}/ws", params={"token": token(**claims)}
        )
        message = await ws.receive()
        codes.append(ws.close_code if ws.closed else message.json()["type"])
        await ws.close()
    assert codes == [4401, "status"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ("", "")),
        ({"JOBSTATE_JWT_AUDIENCE": AUDIENCE}, (AUDIENCE, "")),
        ({"JOBSTATE_JWT_ISSUER": f" {ISSUER} "}, ("", ISSUER)),
    ],
)
def test_the_expectations_come_from_the_environment(
    env: dict[str, str], expected: tuple[str, str]
) -> None:
    secrets = {"JOBSTATE_JWT_SECRET": "j" * 40, "JOBSTATE_CALLBACK_SECRET": "c" * 40}
    config = GatewayConfig.from_env({**secrets, "GATEWAY_SIMULATED_WORKER": "1", **env})
    assert (config.jwt_audience, config.jwt_issuer) == expected
