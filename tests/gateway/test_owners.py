"""A socket's owner check: from the job's stream when the gateway follows the job, else from
the SNAPSHOT of the follow it starts — no GetJob, one answer for sockets arriving together, and
nothing left behind by sockets it refuses."""

from __future__ import annotations

import asyncio
import re

from gwstack import Stack
from support.poll import eventually

from gateway.metrics import Metrics
from gateway.watch import WatchHub
from jobstate.client import JobStateClient
from jobstate.server import RunningServer

SOCKETS = 20
WAIT = 30.0


async def metric(stack: Stack, pattern: str) -> float:
    async with stack.http.get(f"{stack.url}/metrics") as response:
        text = await response.text()
    return sum(float(value) for value in re.findall(pattern, text, re.MULTILINE))


async def get_job_calls(stack: Stack) -> float:
    return await metric(
        stack, r'gateway_grpc_call_seconds_count\{code="\w+",method="GetJob"\} (\S+)'
    )


async def follows(stack: Stack) -> float:
    return await metric(stack, r"^gateway_watch_streams_open (\S+)")


async def test_sockets_of_one_job_opened_together_learn_the_owner_from_its_stream(
    stack: Stack,
) -> None:
    job_id = await stack.start_job("u1")
    before = await get_job_calls(stack)
    sockets = await asyncio.gather(*(stack.socket(job_id, "u1") for _ in range(SOCKETS)))
    greetings = await asyncio.gather(*(ws.next() for ws in sockets))
    assert {(m["type"], m["job_id"]) for m in greetings} == {("status", job_id)}
    assert await get_job_calls(stack) == before  # no GetJob: the follow's SNAPSHOT told
    assert await follows(stack) == 1
    await asyncio.gather(*(ws.close() for ws in sockets))


async def test_refused_sockets_leave_no_follow_behind(stack: Stack) -> None:
    # Made through the service, not started here: this gateway does not expect its socket.
    job_id = (await stack.services.client.create_job("u1", "overlay")).job_id
    foreign = [stack.socket(job_id, "intruder") for _ in range(5)]
    missing = [stack.socket("no-such-job", "u1") for _ in range(5)]
    sockets = await asyncio.gather(*foreign, *missing)
    codes = await asyncio.gather(*(ws.close_code() for ws in sockets))
    assert codes == [4404] * 10

    async def nothing_followed() -> bool:
        return await follows(stack) == 0

    await eventually(nothing_followed, "the follows started for the refused sockets to end")
    # The owner's own socket still opens: a refusal is not remembered as an answer.
    mine = await stack.socket(job_id, "u1")
    assert (await mine.next())["type"] == "status"
    assert await follows(stack) == 1
    await mine.close()


async def test_a_job_started_here_is_followed_before_its_first_socket(stack: Stack) -> None:
    """The page that started a job opens its socket next: the follow is already there, so the
    socket's owner check and greeting need no answer from the service. Once a socket took the
    follow over it ends with the last socket, as any follow."""
    job_id = await stack.start_job("u1")
    assert await follows(stack) == 1  # before any socket
    calls = await get_job_calls(stack)
    ws = await stack.socket(job_id, "u1")
    assert ((await ws.next())["type"], await get_job_calls(stack)) == ("status", calls)
    await ws.close()

    async def unfollowed() -> bool:
        return await follows(stack) == 0

    await eventually(unfollowed, "the follow to end with the job's last socket")


async def test_an_expected_socket_that_never_comes_leaves_no_follow_behind(
    service: RunningServer,
) -> None:
    async with JobStateClient(f"127.0.0.1:{service.port}", timeout=WAIT) as client:
        hub = WatchHub(client, Metrics(), expect_within=0.2)
        job = await client.create_job("u1", "overlay")
        hub.expect(job.job_id)
        hub.expect("no-such-job")  # the service ends that follow: nothing to wait for
        assert len(hub) == 2

        async def empty() -> bool:
            return len(hub) == 0

        await eventually(empty, "both expected follows to end without a socket")
        await hub.close()
