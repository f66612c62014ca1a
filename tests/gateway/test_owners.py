"""Sockets of one job arriving together ask the service who owns the job once, not each."""

from __future__ import annotations

import asyncio
import re

from gwstack import Stack

SOCKETS = 20


async def get_job_calls(stack: Stack) -> int:
    async with stack.http.get(f"{stack.url}/metrics") as response:
        text = await response.text()
    found = re.findall(r'gateway_grpc_call_seconds_count\{code="\w+",method="GetJob"\} (\S+)', text)
    return int(sum(float(value) for value in found))


async def test_sockets_of_one_job_opened_together_share_one_owner_lookup(stack: Stack) -> None:
    job_id = await stack.start_job("u1")
    before = await get_job_calls(stack)
    sockets = await asyncio.gather(*(stack.socket(job_id, "u1") for _ in range(SOCKETS)))
    greetings = await asyncio.gather(*(ws.next() for ws in sockets))
    assert {(m["type"], m["job_id"]) for m in greetings} == {("status", job_id)}
    # One lookup for the sockets that arrived before the job's stream knew its owner; at most
    # a second for sockets arriving between that answer and the stream's SNAPSHOT.
    assert await get_job_calls(stack) - before <= 2
    await asyncio.gather(*(ws.close() for ws in sockets))


async def test_a_shared_lookup_refuses_every_foreign_or_missing_socket(stack: Stack) -> None:
    job_id = await stack.start_job("u1")
    foreign = [stack.socket(job_id, "intruder") for _ in range(5)]
    missing = [stack.socket("no-such-job", "u1") for _ in range(5)]
    sockets = await asyncio.gather(*foreign, *missing)
    codes = await asyncio.gather(*(ws.close_code() for ws in sockets))
    assert codes == [4404] * 10
    # The owner's own socket still opens: a refusal is not remembered as an answer.
    mine = await stack.socket(job_id, "u1")
    assert (await mine.next())["type"] == "status"
    await mine.close()
