"""The multiplexed socket `GET /api/ws`: many jobs on one socket, each with the single-job
socket's rules; per-subscription errors; caps; hostile input; per-job latest-wins."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from gwstack import S3, Stack, WsClient, gateway_config
from support import servers
from support.fakerunpod import FakeRunPod
from support.poll import eventually
from test_ws import fall_behind, progress, service_target, slow_session, versions

from gateway.server import Gateway
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc


async def mux(stack: Stack, user: str = "u1", **headers: str) -> WsClient:
    ws = await stack.http.ws_connect(
        f"{stack.url}/api/ws", params={"token": stack.token(user)}, headers=headers
    )
    return WsClient(ws)


async def send(ws: WsClient, message: dict[str, Any]) -> None:
    await ws.ws.send_str(json.dumps(message))


async def subscribe(ws: WsClient, job_id: str, after: int | None = None) -> None:
    """Subscribe and wait for the acknowledgement."""
    message: dict[str, Any] = {"type": "subscribe", "job_id": job_id}
    if after is not None:
        message["after"] = after
    await send(ws, message)
    assert await ws.next() == {"type": "subscribed", "job_id": job_id}


def of(messages: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    """The event messages of `job_id` (acknowledgements left out)."""
    return [m for m in messages if m.get("job_id") == job_id and "version" in m]


async def collect(ws: WsClient, done: dict[str, int]) -> list[dict[str, Any]]:
    """Messages until every job in `done` reached its version."""
    seen: dict[str, int] = {}
    received = []
    while any(seen.get(job, 0) < version for job, version in done.items()):
        message = await ws.next()
        received.append(message)
        if "version" in message:
            seen[message["job_id"]] = message["version"]
    return received


async def test_two_jobs_on_one_socket_each_in_order(stack: Stack) -> None:
    a, b = await stack.start_job(), await stack.start_job()
    ws = await mux(stack)
    await subscribe(ws, a)
    first = await ws.next()
    assert (first["type"], first["job_id"], first["version"]) == ("status", a, 2)
    await subscribe(ws, b)
    first = await ws.next()
    assert (first["type"], first["job_id"], first["version"]) == ("status", b, 2)
    await asyncio.gather(progress(stack, a, 10, 20, 30), progress(stack, b, 5, 15))
    received = await collect(ws, {a: 5, b: 4})
    assert versions(of(received, a)) == [3, 4, 5]
    assert versions(of(received, b)) == [3, 4]
    await stack.callback(a, {"status": "complete", "output_key": f"exports/{a}/out.mp4"})
    done = await ws.next()
    assert (done["type"], done["job_id"], done["version"]) == ("complete", a, 6)
    await progress(stack, b, 50)  # the terminal event ended only a's subscription
    assert (await ws.next())["version"] == 5
    await ws.nothing_more(0.1)
    assert len(stack.services.hub) == 1  # a's subscription left the hub
    await ws.close()


async def test_a_foreign_or_unknown_job_is_a_4404_subscription_error_and_others_go_on(
    stack: Stack,
) -> None:
    mine, theirs = await stack.start_job("u1"), await stack.start_job("u2")
    ws = await mux(stack)
    await subscribe(ws, mine)
    assert (await ws.next())["type"] == "status"
    for job_id in (theirs, "no-such-job", "bad!id"):
        await send(ws, {"type": "subscribe", "job_id": job_id})
        assert await ws.next() == {
            "type": "subscription_error",
            "job_id": job_id,
            "code": 4404,
            "message": "job not found",
        }
    await progress(stack, theirs, 40)
    await progress(stack, mine, 10)
    message = await ws.next()
    assert (message["job_id"], message["version"]) == (mine, 3)
    await ws.nothing_more(0.1)
    assert not ws.closed.done()
    await ws.close()


async def test_unsubscribe_stops_a_job_and_is_acknowledged(stack: Stack) -> None:
    a, b = await stack.start_job(), await stack.start_job()
    ws = await mux(stack)
    for job_id in (a, b):
        await subscribe(ws, job_id)
        await ws.next()
    await send(ws, {"type": "unsubscribe", "job_id": a})
    assert await ws.next() == {"type": "unsubscribed", "job_id": a}
    await send(ws, {"type": "unsubscribe", "job_id": "never-subscribed"})
    assert await ws.next() == {"type": "unsubscribed", "job_id": "never-subscribed"}
    await progress(stack, a, 10)
    await progress(stack, b, 10)
    message = await ws.next()
    assert (message["job_id"], message["version"]) == (b, 3)
    await ws.nothing_more(0.1)
    await subscribe(ws, b)  # again: acknowledged, and nothing is repeated
    await ws.nothing_more(0.1)
    await ws.close()
    hub = stack.services.hub
    slots = stack.services.slots

    async def empty() -> bool:
        return len(hub) == 0 and not slots.per_job and not slots.per_user

    await eventually(empty, "the hub and the socket slots to be empty")


async def test_resubscribing_with_after_resumes_without_gap_or_duplicate(stack: Stack) -> None:
    job_id = await stack.start_job()
    ws = await mux(stack)
    await subscribe(ws, job_id)
    assert (await ws.next())["version"] == 2
    await progress(stack, job_id, 10)
    assert (await ws.next())["version"] == 3
    await ws.close()
    await progress(stack, job_id, 20, 30)  # versions 4, 5 while away
    again = await mux(stack)
    await subscribe(again, job_id, after=3)
    assert versions(await again.until(5)) == [4, 5]
    await progress(stack, job_id, 40)
    assert versions([await again.next()]) == [6]
    await again.nothing_more(0.1)
    await again.close()


async def test_after_covering_the_terminal_event_sends_nothing(stack: Stack) -> None:
    job_id = await stack.start_job()
    await stack.callback(job_id, {"status": "error", "error": "boom"})
    ws = await mux(stack)
    await subscribe(ws, job_id)
    assert [(m["type"], m["version"]) for m in [await ws.next()]] == [("status", 3)]
    await subscribe(ws, job_id, after=3)  # the subscription ended: a new one, already done
    await ws.nothing_more(0.2)
    await ws.close()


async def test_the_subscription_cap_is_a_4429_subscription_error(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack(max_subscriptions_per_socket=2)
    jobs = [await stack.start_job() for _ in range(3)]
    ws = await mux(stack)
    for job_id in jobs[:2]:
        await subscribe(ws, job_id)
        await ws.next()
    await send(ws, {"type": "subscribe", "job_id": jobs[2]})
    assert await ws.next() == {
        "type": "subscription_error",
        "job_id": jobs[2],
        "code": 4429,
        "message": "too many subscriptions on this socket (limit 2)",
    }
    await send(ws, {"type": "unsubscribe", "job_id": jobs[0]})
    assert (await ws.next())["type"] == "unsubscribed"
    await subscribe(ws, jobs[2])  # room again
    assert (await ws.next())["job_id"] == jobs[2]
    await ws.close()


async def test_the_per_job_socket_cap_counts_subscriptions(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack(max_sockets_per_job=1)
    job_id = await stack.start_job()
    single = await stack.socket(job_id)
    assert (await single.next())["type"] == "status"
    ws = await mux(stack)
    await send(ws, {"type": "subscribe", "job_id": job_id})
    refused = await ws.next()
    assert (refused["type"], refused["code"]) == ("subscription_error", 4429)
    await single.close()
    await ws.close()


async def test_token_origin_and_user_socket_cap(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack(allowed_origins=("https://app.example",), max_sockets_per_user=1)
    url = f"{stack.url}/api/ws"
    for params in ({}, {"token": "garbage"}):
        ws = await stack.http.ws_connect(url, params=params)
        assert (await ws.receive()).type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4401
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await mux(stack, Origin="https://evil.example")
    assert refused.value.status == 403
    first = await mux(stack, Origin="https://app.example")
    second = await mux(stack)
    assert await second.close_code() == 4429
    await send(first, {"type": "ping"})
    assert await first.next() == {"type": "pong"}
    await first.close()


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("hello", "message is not valid JSON"),
        ("[1]", "message must be a JSON object"),
        ('{"type":"nope"}', "unknown message type 'nope'"),
        ('{"job_id":"a"}', "message needs a string type"),
        ('{"type":"subscribe"}', "subscribe needs a job_id: a string of 1 to 128 characters"),
        ('{"type":"subscribe","job_id":7}', "subscribe needs a job_id"),
        ('{"type":"subscribe","job_id":"' + "a" * 129 + '"}', "subscribe needs a job_id"),
        ('{"type":"subscribe","job_id":"a","after":-1}', "after must be a version number"),
        ('{"type":"subscribe","job_id":"a","after":true}', "after must be a version number"),
        ('{"type":"subscribe","job_id":"a","after":1.5}', "after must be a version number"),
        ('{"type":"subscribe","job_id":"a","after":18446744073709551616}', "after must be"),
        ('{"type":"subscribe","jobs":"theirs"}', 'jobs must be "mine"'),
        ('{"type":"ping","x":NaN}', "message is not valid JSON"),
        ("[" * 30_000 + "]" * 30_000, "message is not valid JSON: it is nested too deeply"),
        (b"\x00\x01", "only text frames are accepted"),
    ],
)
async def test_a_frame_that_is_not_a_protocol_message_closes_4400_and_says_why(
    stack: Stack, frame: str | bytes, reason: str
) -> None:
    job_id = await stack.start_job()
    other = await mux(stack)
    await subscribe(other, job_id)
    await other.next()
    ws = await stack.http.ws_connect(f"{stack.url}/api/ws", params={"token": stack.token("u1")})
    if isinstance(frame, bytes):
        await ws.send_bytes(frame)
    else:
        await ws.send_str(frame)
    message = await ws.receive(timeout=10)
    assert message.type is aiohttp.WSMsgType.CLOSE
    assert message.data == 4400 and message.extra is not None and message.extra.startswith(reason)
    await progress(stack, job_id, 10)  # another socket of the same job is not disturbed
    assert (await other.next())["version"] == 3
    await other.close()


async def test_a_frame_over_64_kib_closes_1009(stack: Stack) -> None:
    ws = await mux(stack)
    await ws.ws.send_str(json.dumps({"type": "ping", "pad": "x" * 65_536}))
    assert await ws.close_code() == 1009


async def test_a_ping_flood_queues_one_pong(stack: Stack) -> None:
    metrics = stack.services.metrics
    async with slow_session() as session:
        flood = await session.ws_connect(f"{stack.url}/api/ws", params={"token": stack.token("u1")})
        pings = 40_000
        for _ in range(pings):  # and it reads nothing meanwhile
            await flood.send_str('{"type":"ping"}')

        async def all_read() -> bool:
            return bool(metrics.messages_received._value.get() >= pings)

        await eventually(all_read, f"the gateway to read all {pings} pings", within=60)
        queued = metrics.registry.get_sample_value("gateway_ws_messages_queued")
        assert queued is not None and queued <= 1
        assert metrics.overflow_closes._value.get() == 0
        await flood.close()


async def test_a_slow_socket_loses_only_progress_of_each_job(stack: Stack) -> None:
    busy, quiet = await stack.start_job(), await stack.start_job()
    fast = await mux(stack)
    await subscribe(fast, busy)
    await fast.next()
    async with slow_session() as session:
        slow = await session.ws_connect(f"{stack.url}/api/ws", params={"token": stack.token("u1")})
        for job_id in (quiet, busy):
            await slow.send_str(json.dumps({"type": "subscribe", "job_id": job_id}))
        # and then it does not read, while the busy job floods it; the quiet one changes once
        await fall_behind(stack, busy)  # reports progress below 25
        await progress(stack, quiet, 10)  # version 3: must not be coalesced away
        async with grpc.aio.insecure_channel(service_target(stack)) as channel:
            stub = pb_grpc.JobStateServiceStub(channel)
            for step in range(200):  # the busy job's progress queues behind it
                request = pb.ReportProgressRequest(job_id=busy, progress=50 + step / 10)
                await stub.ReportProgress(request, timeout=10)
            await stub.CompleteJob(pb.CompleteJobRequest(job_id=busy, output_key="exports/s"))
        final = await stack.version(busy)
        messages = []
        async for frame in slow:
            message = frame.json()
            messages.append(message)
            if message["type"] == "complete":
                break
    busy_seen = versions(of(messages, busy))
    assert busy_seen == sorted(set(busy_seen)) and busy_seen[-1] == final
    assert len(busy_seen) < final - 1  # it lost intermediate progress of the busy job
    quiet_seen = [(m["type"], m["version"]) for m in of(messages, quiet)]
    assert quiet_seen == [("status", 2), ("progress", 3)]  # the quiet job lost nothing
    assert versions(await fast.until(final)) == list(range(3, final + 1))
    await fast.close()


async def test_shutdown_closes_1001_and_a_new_socket_resumes_with_after(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack()
    a, b = await stack.start_job(), await stack.start_job()
    ws = await mux(stack)
    last: dict[str, int] = {}
    for job_id in (a, b):
        await subscribe(ws, job_id)
        last[job_id] = (await ws.next())["version"]
    await progress(stack, a, 10)
    last[a] = (await ws.next())["version"]
    await stack.gateway.stop()
    assert await ws.close_code() == 1001
    restarted = await make_stack()
    await progress(restarted, a, 20, 30)  # while no socket is open
    await progress(restarted, b, 20)
    again = await mux(restarted)
    # Both at once: a job's replay may arrive before the other job's acknowledgement.
    for job_id, version in last.items():
        await send(again, {"type": "subscribe", "job_id": job_id, "after": version})
    received = await collect(again, {a: 5, b: 3})
    acks = [m for m in received if m["type"] == "subscribed"]
    assert acks == [{"type": "subscribed", "job_id": a}, {"type": "subscribed", "job_id": b}]
    assert versions(of(received, a)) == [4, 5]
    assert versions(of(received, b)) == [3]
    await again.nothing_more(0.1)
    await again.close()


async def test_the_feed_lists_the_users_jobs_then_every_event_new_jobs_included(
    stack: Stack,
) -> None:
    old = await stack.start_job()
    await stack.callback(old, {"status": "complete", "output_key": f"exports/{old}/o.mp4"})
    running = await stack.start_job()
    await stack.start_job("u2")  # someone else's: never in u1's feed
    ws = await mux(stack)
    await send(ws, {"type": "subscribe", "jobs": "mine"})
    assert await ws.next() == {"type": "subscribed", "jobs": "mine"}
    listing = await ws.next()
    assert listing["type"] == "jobs"
    assert [(j["job_id"], j["status"], j["version"]) for j in listing["jobs"]] == [
        (running, "processing", 2),
        (old, "complete", 3),
    ]
    await progress(stack, running, 10)
    message = await ws.next()
    assert (message["type"], message["job_id"], message["version"]) == ("progress", running, 3)
    new = await stack.start_job()
    created = await collect(ws, {new: 2})
    assert [(m["type"], m["version"], m["status"]) for m in of(created, new)] == [
        ("status", 1, "pending"),
        ("status", 2, "processing"),
    ]
    await ws.nothing_more(0.1)
    await send(ws, {"type": "unsubscribe", "jobs": "mine"})
    assert await ws.next() == {"type": "unsubscribed", "jobs": "mine"}
    await progress(stack, running, 20)
    await ws.nothing_more(0.2)
    await ws.close()


async def test_one_upstream_feed_per_user_shared_by_sockets_and_it_ends_empty(
    stack: Stack,
) -> None:
    feeds = stack.services.feeds
    job_id = await stack.start_job()
    sockets = [await mux(stack) for _ in range(3)]
    for ws in sockets:
        await send(ws, {"type": "subscribe", "jobs": "mine"})
        assert (await ws.next())["type"] == "subscribed"
        assert [j["job_id"] for j in (await ws.next())["jobs"]] == [job_id]
    other = await mux(stack, "u2")
    await send(other, {"type": "subscribe", "jobs": "mine"})
    assert (await other.next())["type"] == "subscribed"
    assert (await other.next())["jobs"] == []
    assert len(feeds) == 2  # u1's three sockets share one stream
    await progress(stack, job_id, 10)
    for ws in sockets:
        assert (await ws.next())["version"] == 3
        await ws.close()
    await other.nothing_more(0.1)
    await other.close()

    async def empty() -> bool:
        return len(feeds) == 0

    await eventually(empty, "no user feed left")


async def test_a_job_on_the_feed_and_subscribed_arrives_once_per_subscription(
    stack: Stack,
) -> None:
    job_id = await stack.start_job()
    ws = await mux(stack)
    await send(ws, {"type": "subscribe", "jobs": "mine"})
    await ws.next()
    await ws.next()  # the list
    await subscribe(ws, job_id)
    assert (await ws.next())["type"] == "status"
    await progress(stack, job_id, 10)
    twice = [await ws.next(), await ws.next()]
    assert twice[0] == twice[1] and twice[0]["version"] == 3
    await ws.close()


async def test_after_a_gateway_restart_the_feed_lists_what_happened_meanwhile(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack()
    job_id = await stack.start_job()
    ws = await mux(stack)
    await send(ws, {"type": "subscribe", "jobs": "mine"})
    await ws.next()
    assert [j["version"] for j in (await ws.next())["jobs"]] == [2]
    await stack.gateway.stop()
    assert await ws.close_code() == 1001
    restarted = await make_stack()
    await progress(restarted, job_id, 40)
    fresh = await restarted.start_job()
    again = await mux(restarted)
    await send(again, {"type": "subscribe", "jobs": "mine"})
    await again.next()
    listing = (await again.next())["jobs"]
    assert [(j["job_id"], j["version"]) for j in listing] == [(fresh, 2), (job_id, 3)]
    await again.close()


async def test_a_feed_the_service_refuses_is_a_subscription_error_and_the_socket_stays(
    tmp_path: Path, runpod: FakeRunPod, s3: S3, http: aiohttp.ClientSession
) -> None:
    # The one stream the service allows is the gateway's job feed's.
    async with servers.service(tmp_path, max_watch_streams=1) as running:
        gateway = Gateway(gateway_config(running.port, runpod, s3))
        await gateway.start()
        try:
            stack = Stack(gateway, http, runpod, s3)
            job_id = await stack.start_job()
            ws = await mux(stack)
            await subscribe(ws, job_id)
            assert (await ws.next())["version"] == 2
            await send(ws, {"type": "subscribe", "jobs": "mine"})
            assert await ws.next() == {"type": "subscribed", "jobs": "mine"}
            refused = await ws.next()
            assert {k: refused[k] for k in ("type", "jobs", "code")} == {
                "type": "subscription_error",
                "jobs": "mine",
                "code": 1013,
            }
            await progress(stack, job_id, 10)
            assert (await ws.next())["version"] == 3  # the job's subscription goes on
            assert len(stack.services.feeds) == 0
            await ws.close()
        finally:
            await gateway.stop()


async def test_a_client_that_asks_and_never_reads_is_closed_1008(stack: Stack) -> None:
    metrics = stack.services.metrics
    async with slow_session() as session:
        flood = await session.ws_connect(f"{stack.url}/api/ws", params={"token": stack.token("u1")})
        # Every unsubscribe is acknowledged and acknowledgements are never dropped: a client
        # that keeps asking and never reads fills its queue up to the hard cap.
        frame = json.dumps({"type": "unsubscribe", "job_id": "x" * 100})
        for _ in range(20_000):
            if flood.closed:
                break
            await flood.send_str(frame)

        async def closed_for_overflow() -> bool:
            return bool(metrics.overflow_closes._value.get() == 1)

        await eventually(closed_for_overflow, "the socket to be closed for not reading")
        queued = metrics.registry.get_sample_value("gateway_ws_messages_queued")
        assert queued == 0  # its queue was dropped at once
