"""The multiplexed socket across replicas: two `jobstate serve` replicas on one PostgreSQL
database, a gateway on each. A socket on gateway 1 (replica 1) follows the user's feed and a
job; jobs started and changed through gateway 2 (replica 2) reach it through the LISTEN/NOTIFY
relay: the new job's CREATED on the feed, and every version of the subscribed job, once each
per subscription and in order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.poll import eventually
from support.processes import GatewayProcess

from gateway.auth import UserAuth

from .conftest import Cluster
from .gateways import JWT_SECRET, Browser, Socket, callback, gateway_env

pytestmark = pytest.mark.timeout(120)


def of(messages: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("job_id") == job_id and "version" in m]


async def test_the_feed_and_subscriptions_carry_changes_made_on_another_replica(
    cluster: Cluster, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    one, two = await cluster.start(2)
    gateways = [
        GatewayProcess(
            args=("--jobstate-target", replica.target),
            env=gateway_env(),
            log_path=tmp_path / f"gw{index}.log",
        )
        for index, replica in enumerate((one, two), start=1)
    ]
    try:
        for gateway in gateways:
            await gateway.start()
        near, far = gateways
        browser = Browser(http, "feed-user")
        first = await browser.start_job(far, {"clip": "a"})
        token = UserAuth(JWT_SECRET).mint("feed-user")
        sock = Socket(await http.ws_connect(f"{near.url}/api/ws", params={"token": token}))
        await sock.ws.send_str(json.dumps({"type": "subscribe", "jobs": "mine"}))
        await sock.ws.send_str(json.dumps({"type": "subscribe", "job_id": first}))
        await sock.until_version(2)  # the job's status

        async def listed_arrived() -> bool:
            return any(m["type"] == "jobs" for m in sock.messages)

        await eventually(listed_arrived, "the feed's jobs list")
        listed = [m for m in sock.messages if m["type"] == "jobs"]
        assert [(j["job_id"], j["version"]) for j in listed[0]["jobs"]] == [(first, 2)]

        second = await browser.start_job(far, {"clip": "b"})  # made on replica 2
        for value in (10, 20, 30):
            status, _ = await callback(http, far, first, {"status": "progress", "progress": value})
            assert status == 200

        async def all_arrived() -> bool:
            # first's 2..5 from its subscription, 3..5 from the feed; second's CREATED
            return len(of(sock.messages, first)) >= 7 and bool(of(sock.messages, second))

        await eventually(all_arrived, "every version of both subscriptions")
        feed_created = [m for m in of(sock.messages, second) if m["version"] == 1]
        assert feed_created and feed_created[0]["status"] == "pending", sock.messages
        versions = [m["version"] for m in of(sock.messages, first)]
        # Once from the subscription (from 2) and once from the feed (from 3): each in order.
        assert sorted(versions) == [2, 3, 3, 4, 4, 5, 5], versions
        assert [v for v in versions if versions.count(v) == 1] == [2]
        await sock.close()
    finally:
        for gateway in gateways:
            await gateway.stop()
