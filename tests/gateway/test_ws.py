"""Every WebSocket rule: close codes, origin, ping/pong, replay, sharing, ordering, shutdown."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import grpc
import pytest
from gwstack import Stack
from support.poll import eventually

from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc


def tiny_buffers(addr_info: tuple[Any, ...]) -> socket.socket:
    """A client socket for a reader that stops reading: its kernel buffer is small."""
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    # A small MSS keeps the gateway's send buffer small too (Linux sizes it per segment).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    return sock


async def progress(stack: Stack, job_id: str, *values: float) -> None:
    for value in values:
        status, _ = await stack.callback(job_id, {"status": "progress", "progress": value})
        assert status == 200


def versions(messages: list[dict[str, Any]]) -> list[int]:
    return [m["version"] for m in messages]


async def test_bad_token_closes_4401_after_the_upgrade(stack: Stack) -> None:
    job_id = await stack.start_job()
    url = f"{stack.url}/api/jobs/{job_id}/ws"
    for params in ({}, {"token": "garbage"}, {"token": stack.auth("u1")["Authorization"]}):
        ws = await stack.http.ws_connect(url, params=params)
        assert (await ws.receive()).type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4401


async def test_unknown_or_foreign_job_closes_4404(stack: Stack) -> None:
    job_id = await stack.start_job("owner")
    for job, user in ((job_id, "intruder"), ("no-such-job", "owner"), ("bad!id", "owner")):
        ws = await stack.socket(job, user)
        assert await ws.close_code() == 4404
        assert ws.queue.empty()


async def test_origin_outside_the_allowed_list_is_refused_before_the_upgrade(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack(allowed_origins=("https://app.example",))
    job_id = await stack.start_job()
    url = f"{stack.url}/api/jobs/{job_id}/ws"
    params = {"token": stack.token("u1")}
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await stack.http.ws_connect(url, params=params, headers={"Origin": "https://evil.example"})
    assert refused.value.status == 403
    ws = await stack.http.ws_connect(url, params=params, headers={"Origin": "https://app.example"})
    assert (await ws.receive_json())["type"] == "status"
    await ws.close()


async def test_default_origin_is_the_public_url(stack: Stack) -> None:
    job_id = await stack.start_job()
    url = f"{stack.url}/api/jobs/{job_id}/ws"
    params = {"token": stack.token("u1")}
    ws = await stack.http.ws_connect(url, params=params, headers={"Origin": stack.url})
    assert (await ws.receive_json())["type"] == "status"
    await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await stack.http.ws_connect(url, params=params, headers={"Origin": "http://evil:1"})


async def test_ping_pong_and_everything_else_is_ignored(stack: Stack) -> None:
    job_id = await stack.start_job()
    ws = await stack.socket(job_id)
    assert (await ws.next())["type"] == "status"
    await ws.ws.send_str('{"type":"ping"}')
    assert await ws.next() == {"type": "pong"}
    for junk in ("hello", "{", '{"type":"subscribe"}', "[]", "x" * 65_536):  # up to 64 KiB
        await ws.ws.send_str(junk)
    await ws.ws.send_bytes(b"\x00\x01" * 32_768)
    await ws.ws.send_str('{"type": "ping"}')
    assert await ws.next() == {"type": "pong"}
    await progress(stack, job_id, 10)
    message = await ws.next()
    assert (message["type"], message["progress"], message["version"]) == ("progress", 10.0, 3)
    assert not ws.closed.done()
    await ws.close()


async def test_a_frame_over_64_kib_closes_only_its_own_socket_1009(stack: Stack) -> None:
    job_id = await stack.start_job()
    other = await stack.socket(job_id)
    assert (await other.next())["type"] == "status"
    big = await stack.socket(job_id)
    assert (await big.next())["type"] == "status"
    await big.ws.send_bytes(bytes(64 * 1024 + 1))
    assert await big.close_code() == 1009
    await progress(stack, job_id, 10)
    assert (await other.next())["version"] == 3
    await other.close()


async def test_every_event_is_one_message_and_terminal_closes(stack: Stack) -> None:
    job_id = await stack.start_job()
    ws = await stack.socket(job_id)
    first = await ws.next()
    assert {k: first[k] for k in ("type", "job_id", "status", "progress", "version")} == {
        "type": "status",
        "job_id": job_id,
        "status": "processing",
        "progress": 0.0,
        "version": 2,
    }
    await progress(stack, job_id, 5, 5, 7)  # the repeat makes no event
    await stack.callback(job_id, {"status": "error", "error": "ffmpeg exited 1"})
    got = [(m["type"], m["version"]) for m in await ws.until(5)]
    assert got == [("progress", 3), ("progress", 4), ("error", 5)]
    assert await ws.close_code() == 1000


async def test_cancelled_message(stack: Stack) -> None:
    job_id = await stack.start_job()
    ws = await stack.socket(job_id)
    await ws.next()
    await stack.post(f"/api/jobs/{job_id}/cancel")
    message = await ws.next()
    assert (message["type"], message["job_id"], message["version"]) == ("cancelled", job_id, 3)
    assert await ws.close_code() == 1000


async def test_finished_job_gives_its_status_then_closes(stack: Stack) -> None:
    job_id = await stack.start_job()
    await stack.callback(job_id, {"status": "complete", "output_key": f"exports/{job_id}/f.mp4"})
    ws = await stack.socket(job_id)
    message = await ws.next()
    assert (message["type"], message["status"], message["version"]) == ("status", "complete", 3)
    assert message["output_url"] == f"/api/storage/presigned-url?key=exports%2F{job_id}%2Ff.mp4"
    assert await ws.close_code() == 1000
    caught_up = await stack.socket(job_id, after=3)
    assert await caught_up.close_code() == 1000
    assert caught_up.queue.empty()


async def test_one_shared_stream_per_job_and_the_hub_ends_empty(stack: Stack) -> None:
    hub = stack.services.hub
    a, b = await stack.start_job(), await stack.start_job()
    sockets = [await stack.socket(a) for _ in range(3)] + [await stack.socket(b)]
    for ws in sockets:
        await ws.next()
    assert len(hub) == 2
    assert stack.services.metrics.watch_streams._value.get() == 2
    await progress(stack, a, 50)
    for ws in sockets[:3]:
        assert (await ws.next())["version"] == 3
    for ws in sockets:
        await ws.close()

    async def empty() -> bool:
        return len(hub) == 0 and stack.services.metrics.watch_streams._value.get() == 0

    await eventually(empty, "the hub and the watch-stream gauge to be empty")


async def test_replay_after_version_from_buffer_and_from_history(stack: Stack) -> None:
    job_id = await stack.start_job()
    live = await stack.socket(job_id)
    assert (await live.next())["version"] == 2
    await progress(stack, job_id, 10, 20, 30)  # versions 3, 4, 5
    assert versions(await live.until(5)) == [3, 4, 5]

    from_buffer = await stack.socket(job_id, after=3)  # the shared stream holds 3..5
    from_history = await stack.socket(job_id, after=1)  # older than the stream: catch-up
    assert versions(await from_buffer.until(5)) == [4, 5]
    replay = await from_history.until(5)
    assert versions(replay) == [2, 3, 4, 5]
    assert [m["type"] for m in replay] == ["status", "progress", "progress", "progress"]
    await progress(stack, job_id, 40)
    for ws in (live, from_buffer, from_history):
        assert versions([await ws.next()]) == [6]
        await ws.nothing_more(0.1)


async def test_replay_on_a_fresh_gateway_starts_the_shared_stream_there(stack: Stack) -> None:
    job_id = await stack.start_job()
    await progress(stack, job_id, 10, 20)  # versions 3, 4
    ws = await stack.socket(job_id, after=2)
    assert versions(await ws.until(4)) == [3, 4]
    fresh = await stack.socket(job_id)
    message = await fresh.next()
    assert (message["type"], message["version"]) == ("status", 4)
    await stack.callback(job_id, {"status": "complete", "output_key": f"exports/{job_id}/r.mp4"})
    for client in (ws, fresh):
        assert [(m["type"], m["version"]) for m in await client.until(5)] == [("complete", 5)]


async def joined(stack: Stack, job_id: str) -> None:
    """Wait until a socket watches the job in the gateway's hub (its join follows its
    upgrade)."""
    hub = stack.services.hub

    async def watched() -> bool:
        return hub.watchers(job_id) == 1

    await eventually(watched, f"a socket to join the gateway's hub for {job_id}")


async def test_a_socket_without_after_is_greeted_though_the_first_one_had_after(
    stack: Stack,
) -> None:
    job_id = await stack.start_job()
    await progress(stack, job_id, 10)  # version 3, and then the job stays quiet
    first = await stack.socket(job_id, after=3)  # nothing to replay: it has seen everything
    await joined(stack, job_id)
    second = await stack.socket(job_id)
    message = await second.next()  # comes while the job does not change
    assert (message["type"], message["status"], message["version"]) == ("status", "processing", 3)
    await first.nothing_more(0.1)
    await progress(stack, job_id, 20)
    for ws in (first, second):
        assert versions([await ws.next()]) == [4]
        await ws.close()


async def test_a_replay_stream_ends_once_its_socket_caught_up_on_a_quiet_job(
    stack: Stack,
) -> None:
    replays = stack.services.metrics.watch_replays
    job_id = await stack.start_job()
    await progress(stack, job_id, 10, 20)  # versions 3, 4, then quiet
    first = await stack.socket(job_id, after=4)
    await joined(stack, job_id)
    behind = await stack.socket(job_id, after=2)
    assert versions(await behind.until(4)) == [3, 4]

    async def no_replays() -> bool:
        return bool(replays._value.get() == 0)

    await eventually(
        no_replays, "no replay stream left"
    )  # the job has not changed: nothing else could end it
    await progress(stack, job_id, 30)
    for ws in (first, behind):
        assert versions([await ws.next()]) == [5]
        await ws.nothing_more(0.1)
        await ws.close()


async def test_versions_strictly_increase_under_concurrent_callbacks(stack: Stack) -> None:
    job_id = await stack.start_job()
    sockets = [await stack.socket(job_id) for _ in range(3)]
    for ws in sockets:
        await ws.next()
    await asyncio.gather(
        *(stack.callback(job_id, {"status": "progress", "progress": i / 2}) for i in range(1, 61))
    )
    final = await stack.version(job_id)
    for ws in sockets:
        seen = versions(await ws.until(final))
        assert seen == list(range(3, final + 1))  # a socket that keeps up sees every version


async def test_shutdown_is_not_held_up_by_a_socket_that_never_reads(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack()
    job_id = await stack.start_job()
    reader = await stack.socket(job_id)
    assert (await reader.next())["version"] == 2
    async with slow_session() as session:
        stuck = await session.ws_connect(  # noqa: F841 (kept open: it must not be collected)
            f"{stack.url}/api/jobs/{job_id}/ws", params={"token": stack.token("u1")}
        )  # and then it does not read: its close frame cannot get through either
        await fall_behind(stack, job_id)
        await asyncio.wait_for(stack.gateway.stop(), 60)  # it never returned before
        assert await reader.close_code() == 1001


async def test_shutdown_closes_sockets_with_1001(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack()
    job_id = await stack.start_job()
    sockets = [await stack.socket(job_id) for _ in range(2)]
    for ws in sockets:
        await ws.next()
    await stack.gateway.stop()
    for ws in sockets:
        assert await ws.close_code() == 1001


async def fall_behind(stack: Stack, job_id: str) -> int:
    """Report progress with 1 KB messages straight to the service until a socket that does not
    read has fallen behind (the gateway dropped a progress message for it); how many."""
    dropped = stack.services.metrics.messages_dropped
    message = "m" * 1000
    async with grpc.aio.insecure_channel(service_target(stack)) as channel:
        stub = pb_grpc.JobStateServiceStub(channel)
        sent = 0
        while dropped._value.get() == 0:
            assert sent < 8_000, "the slow socket never fell behind"
            await asyncio.gather(
                *(
                    stub.ReportProgress(
                        pb.ReportProgressRequest(
                            job_id=job_id, progress=(sent + i + 1) / 400, message=message
                        ),
                        timeout=10,
                    )
                    for i in range(64)
                )
            )
            sent += 64
    return sent


def service_target(stack: Stack) -> str:
    return f"127.0.0.1:{stack.services.config.jobstate_target.split(':')[1]}"


def slow_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(socket_factory=tiny_buffers))


async def test_a_slow_socket_loses_only_progress_and_delays_nobody(stack: Stack) -> None:
    job_id = await stack.start_job()
    fast = await stack.socket(job_id)
    assert (await fast.next())["version"] == 2
    slow_session_ = slow_session()
    slow = await slow_session_.ws_connect(
        f"{stack.url}/api/jobs/{job_id}/ws", params={"token": stack.token("u1")}
    )  # and then it does not read
    sent = await fall_behind(stack, job_id)
    async with grpc.aio.insecure_channel(service_target(stack)) as channel:
        stub = pb_grpc.JobStateServiceStub(channel)
        await stub.CompleteJob(pb.CompleteJobRequest(job_id=job_id, output_key="exports/s"))
    final = await stack.version(job_id)
    fast_seen = versions(await fast.until(final))
    slow_messages = []
    async for frame in slow:
        slow_messages.append(frame.json())
    await slow_session_.close()
    slow_seen = versions(slow_messages)
    assert slow_seen == sorted(set(slow_seen)) and slow_seen[-1] == final
    assert slow_messages[0]["type"] == "status" and slow_messages[-1]["type"] == "complete"
    assert len(slow_seen) < final - 1  # it lost intermediate progress messages
    assert fast_seen == list(range(3, final + 1))  # the reader that keeps up got everything
    print(f"sent {sent} progress events; the slow socket got {len(slow_seen)} messages")


async def test_a_replay_joining_a_stream_that_is_still_opening_gets_events(stack: Stack) -> None:
    for _ in range(3):  # the two joins race with the shared stream's first message
        job_id = await stack.start_job()
        await progress(stack, job_id, 10, 20)  # versions 3, 4
        fresh, replay = await asyncio.gather(stack.socket(job_id), stack.socket(job_id, after=2))
        assert [(m["type"], m["version"]) for m in await replay.until(4)] == [
            ("progress", 3),
            ("progress", 4),
        ]
        seen = await fresh.until(4)  # whichever socket opened the stream, status comes first
        assert seen[0]["type"] == "status" and versions(seen) == list(range(seen[0]["version"], 5))
        await progress(stack, job_id, 30)
        for ws in (fresh, replay):
            assert (await ws.next())["version"] == 5
            await ws.close()


async def test_heartbeat_closes_a_peer_that_stopped_answering(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack(ws_heartbeat=0.2)
    job_id = await stack.start_job()
    alive = await stack.socket(job_id)
    await alive.next()
    url = f"{stack.url}/api/jobs/{job_id}/ws"
    dead = await stack.http.ws_connect(url, params={"token": stack.token("u1")}, autoping=False)
    kinds = []
    while True:  # it sees pings it never answers, then the server gives up on it
        message = await asyncio.wait_for(dead.receive(), 10)
        kinds.append(message.type)
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            break
    assert aiohttp.WSMsgType.PING in kinds
    await progress(stack, job_id, 50)
    assert (await alive.next())["version"] == 3  # the peer that answers stays open
    await alive.close()


async def test_a_ping_flood_from_a_client_that_never_reads_queues_one_pong(stack: Stack) -> None:
    metrics = stack.services.metrics
    job_id = await stack.start_job()
    url = f"{stack.url}/api/jobs/{job_id}/ws"
    async with slow_session() as session:
        flood = await session.ws_connect(url, params={"token": stack.token("u1")})
        assert (await flood.receive_json(timeout=10))["type"] == "status"
        pings = 40_000  # ~700 KB of pongs: far more than the socket buffers on the way hold
        for _ in range(pings):  # and it reads nothing meanwhile
            await flood.send_str('{"type":"ping"}')

        async def all_read() -> bool:
            return bool(metrics.messages_received._value.get() >= pings)

        await eventually(all_read, f"the gateway to read all {pings} pings", within=60)
        queued = metrics.registry.get_sample_value("gateway_ws_messages_queued")
        assert queued is not None and queued <= 1  # the one pending pong
        kinds = []
        await progress(stack, job_id, 10)
        async for frame in flood:  # reading again: the socket still works, nothing was closed
            message = frame.json()
            kinds.append(message["type"])
            if message["type"] == "progress":
                break
    assert kinds[-1] == "progress" and set(kinds[:-1]) == {"pong"}
    assert len(kinds) - 1 < pings  # pings that found a pong waiting were answered by it
    assert metrics.overflow_closes._value.get() == 0
