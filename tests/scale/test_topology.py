"""The docker-compose topology as plain processes on this machine: two replicas on the
machine's PostgreSQL, found by the gateways through one DNS name with a record for each (a
fake DNS server; compose uses a network alias), two gateways (each one's callbacks addressed
to the other, as a proxy in front of both would spread them), moto's S3 server standing in
for MinIO/R2, and the built-in simulated worker. A job started on gateway 1 is watched on
gateway 2 to completion, and its download link serves the file the worker uploaded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import boto3
import pytest
from moto.server import ThreadedMotoServer
from support.ports import free_port
from support.processes import GatewayProcess

from .conftest import Cluster
from .fakedns import FakeDns
from .gateways import Browser, gateway_env

pytestmark = pytest.mark.timeout(120)

BUCKET = "reel-ballers-users"
SERVICE_TOKEN = "topology-service-token-0123456789abcdef"


@pytest.fixture
def s3() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # What the compose file's minio-init does.
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


async def test_job_started_on_gateway_1_completes_on_a_socket_of_gateway_2(
    cluster: Cluster, s3: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    replica_port = free_port()
    await cluster.start_at(
        ("127.0.0.1", replica_port), ("127.0.0.2", replica_port), JOBSTATE_API_TOKEN=SERVICE_TOKEN
    )
    dns = FakeDns({"jobstate": ["127.0.0.1", "127.0.0.2"]})
    await dns.start()
    ports = [free_port(), free_port()]
    gateways = []
    for index, port in enumerate(ports):
        env = gateway_env(
            JOBSTATE_TARGET=dns.target("jobstate", replica_port),
            JOBSTATE_API_TOKEN=SERVICE_TOKEN,
            GATEWAY_PUBLIC_URL=f"http://127.0.0.1:{ports[1 - index]}",
            RUNPOD_ENDPOINT_URL="",  # the simulated worker
            SIMWORKER_STEP_SECONDS="0.1",
            R2_ENDPOINT_URL=s3,
            R2_ACCESS_KEY_ID="testing",
            R2_SECRET_ACCESS_KEY="testing",
            R2_BUCKET=BUCKET,
        )
        gateways.append(GatewayProcess(env=env, port=port, log_path=tmp_path / f"gw{index}.log"))
    try:
        await asyncio.gather(*(gateway.start() for gateway in gateways))
        browser = Browser(http)
        job_id = await browser.start_job(gateways[0], {"clip": "topology", "overlay": "score"})
        token_query = {"after": "1"}  # replay from creation: every event, however fast the job
        sock = await browser.socket(gateways[1], job_id, **token_query)
        assert await sock.close_code() == 1000, gateways[0].log()[-2000:]

        types = [m["type"] for m in sock.messages]
        assert types == ["status"] + ["progress"] * 9 + ["complete"], sock.messages
        assert sock.versions == list(range(2, 13))
        assert [m["progress"] for m in sock.messages[1:-1]] == [10.0 * i for i in range(1, 10)]
        output_url = sock.messages[-1]["output_url"]
        key = parse_qs(urlsplit(output_url).query)["key"][0]
        assert key == f"exports/{job_id}/{job_id}.mp4"

        for gateway in gateways:
            status, job = await browser.get(gateway, f"/api/jobs/{job_id}")
            assert (status, job["status"], job["output_key"]) == (200, "complete", key)
            status, link = await browser.get(gateway, output_url)
            assert status == 200, link
            async with http.get(link["url"]) as response:
                assert response.status == 200
                assert await response.read() == f"simulated export {job_id}\n".encode()
    finally:
        for gateway in gateways:
            await gateway.stop()
        dns.close()
