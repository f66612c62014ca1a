"""Idle and half-sent HTTP connections are closed (slowloris): after `keepalive_timeout` a
connection that has not completed a request's headers is dropped, whether it never sent a
byte, stopped in the middle of its headers, or went quiet after a response. Production uses
75 s (aiohttp's `run_app` default); these tests use a short value on a real gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from gwstack import S3, gateway_config
from support.fakerunpod import FakeRunPod

from gateway.server import Gateway
from jobstate.server import RunningServer

SHORT = 2.0
WITHIN = 60.0  # a deadline for a close that should come after SHORT, never a measurement


@pytest.fixture
async def gateway(service: RunningServer, runpod: FakeRunPod, s3: S3) -> AsyncIterator[Gateway]:
    gateway = Gateway(gateway_config(service.port, runpod, s3), keepalive_timeout=SHORT)
    await gateway.start()
    yield gateway
    await gateway.stop()


async def until_closed(gateway: Gateway, send: bytes) -> bytes:
    """Connect, send `send`, and return everything the gateway sent before it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(send)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), WITHIN)
    finally:
        writer.close()


async def test_idle_and_half_sent_connections_are_closed(gateway: Gateway) -> None:
    silent, half_sent, trickled, after_response = await asyncio.gather(
        until_closed(gateway, b""),
        until_closed(gateway, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "),
        until_closed(gateway, b"P"),
        until_closed(gateway, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    )
    assert (silent, half_sent, trickled) == (b"", b"", b"")
    assert after_response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert after_response.endswith(b'{"status": "ok"}')  # one response, then the close


def test_production_keeps_idle_connections_75_seconds(
    service: RunningServer, runpod: FakeRunPod, s3: S3
) -> None:
    assert Gateway(gateway_config(service.port, runpod, s3)).keepalive_timeout == 75.0
