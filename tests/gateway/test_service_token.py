"""JOBSTATE_API_TOKEN: the gateway sends `authorization: Bearer <token>` on every RPC."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from gwstack import S3, FakeRunPod, Gateway, Stack, gateway_config

from jobstate.config import ServiceConfig
from jobstate.server import start_server


async def test_the_gateway_carries_the_service_token(
    tmp_path: Path, runpod: FakeRunPod, s3: S3, http: aiohttp.ClientSession
) -> None:
    service = await start_server(
        ServiceConfig(
            listen="127.0.0.1:0",
            database_url=f"sqlite+aiosqlite:///{tmp_path}/jobstate.db",
            environment="development",
            api_token="service-token-0123456789",
        )
    )
    gateways = []
    try:
        results = {}
        for name, token in (("with", "service-token-0123456789"), ("without", ""), ("wrong", "x")):
            gateway = Gateway(gateway_config(service.port, runpod, s3, api_token=token))
            await gateway.start()
            gateways.append(gateway)
            stack = Stack(gateway, http, runpod, s3)
            status, _ = await stack.post("/api/export/overlay/start", json={})
            results[name] = status
            if status == 200:
                job_id = (await stack.get("/api/jobs"))[1]["jobs"][0]["job_id"]
                ws = await stack.socket(job_id)
                assert (await ws.next())["type"] == "status"  # WatchJob carries it too
                await ws.close()
        assert results == {"with": 200, "without": 500, "wrong": 500}
    finally:
        for gateway in gateways:
            await gateway.stop()
        await service.stop(grace=1)
