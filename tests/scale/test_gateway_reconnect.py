"""The window of a rolling restart: one replica has just come back, the other has just left.

Replica 1 sits behind a TCP proxy the test can cut, so the gateway's channel has it in
reconnect back-off while it is in fact reachable again; then replica 2 drains and exits. A
request arriving then should wait (within its deadline) for the replica that is reachable,
not fail at once. Before 38091ec (unary calls without wait_for_ready) a rolling restart that
waited for each replica to be SERVING before stopping the next answered 89 of 725 GETs 503.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from support.poll import eventually
from support.processes import GatewayProcess
from support.tcpproxy import TcpProxy

from .conftest import Cluster, tcp_peers
from .gateways import Browser, gateway_env

pytestmark = pytest.mark.timeout(120)


async def test_a_request_waits_for_a_reconnecting_replica_instead_of_failing_at_once(
    cluster: Cluster, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    one, two = await cluster.start(2)
    proxy = TcpProxy("127.0.0.1", one.process.port)
    await proxy.start()
    gateway = GatewayProcess(
        env=gateway_env(JOBSTATE_TARGET=f"ipv4:127.0.0.1:{proxy.port},{two.target}"),
        log_path=tmp_path / "gw.log",
    )
    try:
        await gateway.start()
        browser = Browser(http)
        job_id = await browser.start_job(gateway, {"clip": "reconnect"})

        async def gateway_lost_replica_1() -> bool:
            return ("127.0.0.1", proxy.port) not in tcp_peers(gateway.pid)

        proxy.disconnect()  # replica 1 unreachable: the channel backs off reconnecting to it
        await eventually(gateway_lost_replica_1, what="the gateway to lose replica 1")
        assert await two.process.stop() == 0  # replica 2 drains and leaves ...
        proxy.restore()  # ... just as replica 1 is reachable again
        status, body = await browser.get(gateway, f"/api/jobs/{job_id}")
        assert (status, body.get("status")) == (200, "processing"), body
    finally:
        await gateway.stop()
        await proxy.close()
