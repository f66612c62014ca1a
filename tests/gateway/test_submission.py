"""A start whose `/run` RunPod accepted: cancelled meanwhile, or the service unreachable when
the id is to be recorded. It never answers 5xx, never submits twice, and a job that finished
meanwhile is cancelled on RunPod."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from gwstack import WAIT, Stack
from support.poll import eventually
from support.tcpproxy import TcpProxy

from jobstate.client import JobStateClient
from jobstate.server import RunningServer

START = "/api/export/overlay/start"


def runs(stack: Stack) -> list[tuple[str, str]]:
    return [p for p in stack.runpod.paths() if p[1] == "/run"]


async def test_a_cancel_while_run_is_in_flight_cancels_the_runpod_job(stack: Stack) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        started.set()
        await release.wait()

    stack.runpod.before_run = hold
    starting = asyncio.create_task(stack.post(START, json={"clip": "a"}))
    await asyncio.wait_for(started.wait(), WAIT)
    _, listed = await stack.get("/api/jobs")
    [job] = listed["jobs"]
    status, cancelled = await stack.post(f"/api/jobs/{job['job_id']}/cancel")
    assert (status, cancelled["status"]) == (200, "cancelled")
    assert runs(stack) == stack.runpod.paths()  # no id yet: nothing to cancel on RunPod

    release.set()
    status, body = await asyncio.wait_for(starting, WAIT)
    submission = await stack.runpod.next_submission()

    assert (status, body) == (200, {"job_id": job["job_id"], "status": "cancelled"})
    assert stack.runpod.paths() == [("POST", "/run"), ("POST", f"/cancel/{submission['id']}")]


@pytest.fixture
async def proxy(service: RunningServer) -> AsyncIterator[TcpProxy]:
    """The gateway's way to the service, which a test can cut and restore."""
    proxy = TcpProxy("127.0.0.1", service.port)
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def direct(service: RunningServer) -> AsyncIterator[JobStateClient]:
    """A client of the service that does not go through the proxy."""
    client = JobStateClient(f"127.0.0.1:{service.port}")
    yield client
    await client.close()


async def test_the_service_unreachable_after_run_is_retried_not_resubmitted(
    make_stack: Callable[..., Awaitable[Stack]], proxy: TcpProxy, direct: JobStateClient
) -> None:
    # A short deadline keeps each attempt against the cut service short.
    stack = await make_stack(jobstate_target=f"127.0.0.1:{proxy.port}", rpc_timeout=3.0)

    async def cut() -> None:
        proxy.disconnect()

    stack.runpod.before_run = cut
    key = {"Idempotency-Key": "k1"}
    status, body = await stack.post(START, json={"clip": "a"}, headers=key)
    assert (status, body["status"]) == (200, "processing"), body  # RunPod has it: never 5xx
    submission = await stack.runpod.next_submission()
    job_id = body["job_id"]
    assert (await direct.get_job(job_id)).external_id == ""  # not recorded yet

    # A replay while the service is still unreachable cannot look the key up; it says so
    # (503) and submits nothing.
    status, _ = await stack.post(START, json={"clip": "a"}, headers=key)
    assert (status, len(runs(stack))) == (503, 1)

    stack.runpod.before_run = None
    proxy.restore()
    # Replayed at once, whether or not the id is recorded yet: the same job, no second /run.
    again = await stack.post(START, json={"clip": "a"}, headers=key)
    assert again == (200, {"job_id": job_id, "status": "processing"})

    async def recorded() -> bool:
        return bool((await direct.get_job(job_id)).external_id == submission["id"])

    await eventually(recorded, what="the RunPod id to be recorded once the service is back")
    assert await stack.post(START, json={"clip": "a"}, headers=key) == again
    assert len(runs(stack)) == 1
