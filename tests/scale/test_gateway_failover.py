"""Gateways in front of several replicas: failover without a gap, callbacks on any gateway.

`JOBSTATE_TARGET=ipv4:a,b` makes the gateway's channel spread calls over both replicas with
gRPC's own round_robin; when the replica carrying a job's watch stream dies (kill -9), the
gateway re-watches through the other with after_version and the browser sockets, which stay
open, see every version exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from support.processes import GatewayProcess

from jobstate.v1 import jobstate_pb2 as pb

from .conftest import Cluster, Replica
from .gateways import Browser, Socket, callback, gateway_env

pytestmark = pytest.mark.timeout(120)

StartGateway = Callable[..., Awaitable[GatewayProcess]]


@pytest.fixture
async def start_gateway(http: aiohttp.ClientSession, tmp_path: Path) -> AsyncIterator[StartGateway]:
    started: list[GatewayProcess] = []

    async def start(*args: str, **env: str) -> GatewayProcess:
        name = f"gateway{len(started)}.log"
        gateway = GatewayProcess(args=args, env=gateway_env(**env), log_path=tmp_path / name)
        started.append(gateway)
        await gateway.start()
        return gateway

    yield start
    for gateway in started:
        await gateway.stop()


async def progress(replica: Replica, job_id: str, value: float) -> int:
    request = pb.ReportProgressRequest(job_id=job_id, progress=value, message=f"at {value}")
    return (await replica.stub.ReportProgress(request, timeout=10)).job.version


def assert_contiguous(sock: Socket, last: int) -> None:
    """One status message first, then one message per version up to `last`, no gap, no repeat."""
    assert sock.messages[0]["type"] == "status"
    first = sock.versions[0]
    assert sock.versions == list(range(first, last + 1)), sock.versions
    assert sock.messages[-1]["type"] == "complete"


@pytest.mark.parametrize("stop", ["kill -9", "SIGTERM"])
async def test_sockets_survive_each_replica_going_away_in_turn_and_miss_nothing(
    cluster: Cluster, http: aiohttp.ClientSession, start_gateway: StartGateway, stop: str
) -> None:
    """kill -9 is a crash; SIGTERM is a rolling restart (the replica drains and ends its
    watch streams with OK, which the gateway must not take for the job's end)."""
    one, two = await cluster.start(2)
    # The variable, not the flag: JOBSTATE_TARGET with two addresses.
    gateway = await start_gateway(JOBSTATE_TARGET=f"ipv4:{one.target},{two.target}")
    browser = Browser(http)
    job_id = await browser.start_job(gateway, {"clip": "failover"})
    sockets = [await browser.socket(gateway, job_id) for _ in range(3)]
    for sock in sockets:
        await sock.until_version(2)  # created, submitted

    value = 0.0
    last = 2
    # Each replica dies once while the job runs, so whichever carries the gateway's watch
    # stream is killed at some point; the other one takes the writes meanwhile.
    for victim, survivor in ((one, two), (two, one)):
        for _ in range(3):
            value += 1
            status, body = await callback(
                http, gateway, job_id, {"status": "progress", "progress": value}
            )
            assert status == 200, body
            last = body["version"]
        for sock in sockets:
            await sock.until_version(last)
        if stop == "kill -9":
            await victim.kill()
        else:
            assert await victim.process.stop() == 0
        for _ in range(3):
            value += 1
            last = await progress(survivor, job_id, value)
        for sock in sockets:
            await sock.until_version(last)  # raises if the socket was closed meanwhile
        if victim is one:
            await victim.restart()

    status, body = await callback(
        http, gateway, job_id, {"status": "complete", "output_key": f"exports/{job_id}/o.mp4"}
    )
    assert status == 200, body
    for sock in sockets:
        await sock.until_version(body["version"])
        assert await sock.close_code() == 1000
        assert_contiguous(sock, body["version"])
    status, job = await browser.get(gateway, f"/api/jobs/{job_id}")
    assert (status, job["status"], job["version"]) == (200, "complete", body["version"])
    if stop == "kill -9":
        # The watch stream was really cut and resumed (gateway/watch.py logs each resume).
        assert "interrupted (UNAVAILABLE); resuming" in gateway.log()


async def test_a_callback_on_gateway_b_reaches_sockets_on_gateway_a(
    cluster: Cluster, http: aiohttp.ClientSession, start_gateway: StartGateway
) -> None:
    one, two = await cluster.start(2)
    # Each gateway talks to a different replica, so the events cross replicas too.
    gateway_a, gateway_b = await asyncio.gather(
        start_gateway("--jobstate-target", one.target),
        start_gateway("--jobstate-target", two.target),
    )
    browser = Browser(http)
    job_id = await browser.start_job(gateway_a, {"clip": "two gateways"})
    on_a = [await browser.socket(gateway_a, job_id) for _ in range(2)]
    on_b = await browser.socket(gateway_b, job_id)
    for sock in [*on_a, on_b]:
        await sock.until_version(2)

    versions = []
    for step in range(1, 10):
        body = {"status": "progress", "progress": step * 10, "message": f"step {step}"}
        status, reply = await callback(http, gateway_b, job_id, body)
        assert status == 200, reply
        versions.append(reply["version"])
    key = f"exports/{job_id}/{job_id}.mp4"
    status, reply = await callback(
        http, gateway_b, job_id, {"status": "complete", "output_key": key}
    )
    assert status == 200, reply
    last = reply["version"]
    assert versions == list(range(3, last))

    for sock in [*on_a, on_b]:
        await sock.until_version(last)
        assert await sock.close_code() == 1000
        assert_contiguous(sock, last)
        progress_messages = [m for m in sock.messages if m["type"] == "progress"]
        assert [m["progress"] for m in progress_messages][-9:] == [s * 10 for s in range(1, 10)]
        assert sock.messages[-1]["output_url"].endswith(key.replace("/", "%2F"))
    # A repeated callback on the other gateway is harmless: 2xx, no new version.
    status, reply = await callback(
        http, gateway_a, job_id, {"status": "complete", "output_key": key}
    )
    assert (status, reply["version"]) == (200, last)
