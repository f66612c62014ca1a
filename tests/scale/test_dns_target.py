"""JOBSTATE_TARGET as a DNS name with several records (`dns:` scheme, gRPC's own resolver).

A fake DNS server on loopback answers `jobstate.test` with 127.0.0.1 and 127.0.0.2, and one
replica listens on each, on the same port, as replicas behind a headless service or a compose
network alias do. The gateway's TCP connections (read from /proc) show which replicas its
channel uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from support.poll import eventually
from support.ports import free_port
from support.processes import GatewayProcess

from jobstate.v1 import jobstate_pb2 as pb

from .conftest import Cluster, Replica, tcp_peers
from .fakedns import FakeDns
from .gateways import Browser, callback, gateway_env

pytestmark = pytest.mark.timeout(120)

NAME = "jobstate.test"
HOSTS = ("127.0.0.1", "127.0.0.2")


@pytest.fixture
async def dns() -> AsyncIterator[FakeDns]:
    server = FakeDns({NAME: list(HOSTS)})
    await server.start()
    yield server
    server.close()


@pytest.fixture
async def replicas(cluster: Cluster) -> list[Replica]:
    port = free_port()
    return await cluster.start_at(*((host, port) for host in HOSTS))


@pytest.fixture
async def gateway(
    dns: FakeDns, replicas: list[Replica], http: aiohttp.ClientSession, tmp_path: Path
) -> AsyncIterator[GatewayProcess]:
    target = dns.target(NAME, replicas[0].process.port)
    process = GatewayProcess(env=gateway_env(JOBSTATE_TARGET=target), log_path=tmp_path / "gw.log")
    await process.start()
    yield process
    await process.stop()


def connected(gateway: GatewayProcess, replicas: list[Replica]) -> list[Replica]:
    peers = tcp_peers(gateway.pid)
    return [r for r in replicas if (r.process.host, r.process.port) in peers]


async def test_a_dns_target_fails_over_when_its_replica_dies(
    gateway: GatewayProcess, replicas: list[Replica], http: aiohttp.ClientSession
) -> None:
    browser = Browser(http)
    job_id = await browser.start_job(gateway, {"clip": "dns"})
    sock = await browser.socket(gateway, job_id)
    await sock.until_version(2)
    used = connected(gateway, replicas)
    assert used, "the gateway holds no connection to any replica"
    # With round_robin `used` is both replicas and the watch stream may be on either (with
    # pick_first, before 38091ec, it was the one replica carrying everything).
    victim = used[0]
    await victim.kill()
    (survivor,) = [r for r in replicas if r is not victim]
    request = pb.ReportProgressRequest(job_id=job_id, progress=40.0, message="via survivor")
    version = (await survivor.stub.ReportProgress(request, timeout=10)).job.version
    await sock.until_version(version)  # the gateway re-watched through the survivor
    status, body = await callback(
        http, gateway, job_id, {"status": "complete", "output_key": f"exports/{job_id}/o.mp4"}
    )
    assert status == 200, body
    await sock.until_version(body["version"])
    assert await sock.close_code() == 1000
    assert sock.versions == list(range(2, body["version"] + 1))


async def test_a_dns_target_spreads_calls_over_every_record(
    gateway: GatewayProcess, replicas: list[Replica], http: aiohttp.ClientSession
) -> None:
    browser = Browser(http)
    for _ in range(4):
        await browser.start_job(gateway, {"clip": "spread"})

    async def both() -> bool:
        return len(connected(gateway, replicas)) == len(replicas)

    await eventually(both, within=5, what="gateway connections to both replicas")
