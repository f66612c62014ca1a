"""PostgreSQL goes away under load and comes back.

`jobstate serve` (a real process) reaches a database of this test's own through a TCP proxy
the test controls; cutting the proxy is the database stopping (every connection dropped, new
ones refused) without touching the shared PostgreSQL server. A gateway in front of the service
answers 503 meanwhile. Skipped without JOBSTATE_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import grpc
import pytest
from support.poll import eventually
from support.postgres import admin_url, scratch_database
from support.processes import ServeProcess
from support.servers import create_job, history, stub
from support.tcpproxy import TcpProxy

from gateway.auth import UserAuth
from gateway.config import GatewayConfig
from gateway.server import Gateway
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

JOBS = 8
JWT_SECRET = "outage-test-jwt-secret-long-enough-for-hs256"
RPC_DEADLINE = 8.0  # the service's own timeouts (connect 5 s) must answer before this


@pytest.fixture
async def serve_via_proxy(tmp_path: Path) -> AsyncIterator[tuple[ServeProcess, TcpProxy]]:
    url = admin_url()
    async with scratch_database("jobstate_fault") as db_url:
        proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
        await proxy.start()
        proxied = db_url.set(host="127.0.0.1", port=proxy.port)
        proc = ServeProcess(
            database_url=proxied.render_as_string(hide_password=False),
            log_path=tmp_path / "serve.log",
        )
        try:
            await proc.start()
            yield proc, proxy
        finally:
            await proc.stop()
            await proxy.close()


class Load:
    """Workers reporting ever-higher progress on their jobs; every acknowledgement recorded."""

    def __init__(self, client: pb_grpc.JobStateServiceAsyncStub) -> None:
        self.client = client
        self.acked: list[tuple[str, int, float]] = []  # (job_id, version, progress)
        self.failures: list[tuple[grpc.StatusCode, str]] = []
        self.stop = asyncio.Event()

    async def worker(self, job_id: str) -> None:
        step = 0
        while not self.stop.is_set():
            step += 1
            request = pb.ReportProgressRequest(job_id=job_id, progress=min(step / 10, 100))
            try:
                reply = await self.client.ReportProgress(request, timeout=RPC_DEADLINE)
            except grpc.aio.AioRpcError as exc:
                self.failures.append((exc.code(), exc.details() or ""))
                await asyncio.sleep(0.01)  # pacing only: do not spin on a dead store
                continue
            self.acked.append((job_id, reply.job.version, reply.job.progress))

    def acks(self) -> int:
        return len(self.acked)


@pytest.fixture
async def gateway(serve_via_proxy: tuple[ServeProcess, TcpProxy]) -> AsyncIterator[Gateway]:
    proc, _ = serve_via_proxy
    gateway = Gateway(
        GatewayConfig(
            jwt_secret=JWT_SECRET,
            callback_secret="outage-callback-secret-0123456789abcdef",
            port=0,
            jobstate_target=proc.target,
            simulated_worker=True,
        )
    )
    await gateway.start()
    yield gateway
    await gateway.stop()


async def gateway_get(gateway: Gateway, path: str) -> tuple[int, object]:
    headers = {"Authorization": f"Bearer {UserAuth(JWT_SECRET).mint('u1')}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(gateway.url + path, headers=headers) as response,
    ):
        return response.status, await response.json()


async def test_rpcs_fail_fast_then_recover_and_nothing_acknowledged_is_lost(
    serve_via_proxy: tuple[ServeProcess, TcpProxy], gateway: Gateway
) -> None:
    proc, proxy = serve_via_proxy
    async with grpc.aio.insecure_channel(
        proc.target, options=[("grpc.max_reconnect_backoff_ms", 1000)]
    ) as channel:
        client = stub(channel)
        job_ids = [f"pg-{i}" for i in range(JOBS)]
        for job_id in job_ids:
            await create_job(client, job_id)
        load = Load(client)
        workers = [asyncio.create_task(load.worker(j)) for j in job_ids]
        try:
            await eventually(lambda: _at_least(load.acks, 200), what="200 acknowledged updates")
            proxy.disconnect()  # the database is gone
            before = len(load.failures)
            await eventually(
                lambda: _at_least(lambda: len(load.failures) - before, 3 * JOBS),
                within=60,
                what="updates to fail while the database is down",
            )
            # Reads fail the same way, and fast: UNAVAILABLE before our own deadline.
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await client.GetJob(pb.GetJobRequest(job_id="pg-0"), timeout=RPC_DEADLINE)
            assert (info.value.code(), info.value.details()) == (
                grpc.StatusCode.UNAVAILABLE,
                "the job store is unavailable; retry shortly",
            )
            # The gateway in front answers 503, and says why, in JSON.
            assert await gateway_get(gateway, "/api/jobs/pg-0") == (
                503,
                {"error": "the jobstate service is unavailable; try again shortly"},
            )
            acked_during_outage = load.acks()

            proxy.restore()  # the database is back: no restart, no intervention
            await eventually(
                lambda: _at_least(load.acks, acked_during_outage + 200),
                within=60,
                what="updates to succeed again after the database came back",
            )
            assert (await gateway_get(gateway, "/api/jobs/pg-0"))[0] == 200
        finally:
            load.stop.set()
            await asyncio.gather(*workers)

        outage_codes = {code for code, _ in load.failures}
        assert outage_codes == {grpc.StatusCode.UNAVAILABLE}, load.failures[:5]
        assert {details for _, details in load.failures} == {
            "the job store is unavailable; retry shortly"
        }
        await _assert_every_ack_in_history(client, job_ids, load.acked)


async def _at_least(count: Callable[[], int], n: int) -> bool:
    return count() >= n


async def _assert_every_ack_in_history(
    client: pb_grpc.JobStateServiceAsyncStub,
    job_ids: list[str],
    acked: list[tuple[str, int, float]],
) -> None:
    """Finish every job, replay its history from version 1: versions are contiguous and each
    acknowledged (version, progress) is there."""
    for job_id in job_ids:
        await client.CancelJob(pb.CancelJobRequest(job_id=job_id, reason="done"), timeout=10)
        replay = await history(client, job_id, 1, timeout=30)
        versions = [m.job.version for m in replay]
        assert versions == list(range(2, versions[-1] + 1)), job_id
        progress_at = {m.job.version: m.job.progress for m in replay}
        progress_at[1] = 0.0
        missing = [(v, p) for j, v, p in acked if j == job_id and progress_at.get(v) != p]
        assert missing == [], f"{job_id}: acknowledged but not in history: {missing[:5]}"
