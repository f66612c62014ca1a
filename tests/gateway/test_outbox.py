"""The per-socket outbox: latest-wins coalescing at >= 64 undelivered, never for status/close;
one pending pong; past the hard caps the socket is closed with 1008 at once."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.metrics import Metrics
from gateway.outbox import (
    CLOSE_OVERFLOW,
    COALESCE_AT,
    MAX_QUEUED,
    MAX_QUEUED_BYTES,
    PONG,
    Outbox,
)


class GatedSocket:
    """A socket that accepts nothing until `gate` is set, and records what it got. With
    `close_waits`, a close waits for the gate too (a peer that reads nothing, not even it)."""

    def __init__(self, close_waits: bool = False) -> None:
        self.gate = asyncio.Event()
        self.close_waits = close_waits
        self.sent: list[str] = []
        self.sent_more = asyncio.Event()
        self.close_code: int | None = None
        self.closed = False
        self.closed_event = asyncio.Event()

    async def send_str(self, data: str, compress: int | None = None) -> None:
        await self.gate.wait()
        self.sent.append(data)
        self.sent_more.set()

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        self.close_code = code
        self.closed = True
        if self.close_waits:
            await self.gate.wait()
        self.closed_event.set()
        return True


class Transport(asyncio.Transport):
    """The socket's connection: records that it was aborted."""

    def __init__(self) -> None:
        super().__init__()
        self.aborted = asyncio.Event()

    def abort(self) -> None:
        self.aborted.set()


def queued(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("gateway_ws_messages_queued")


def progress(version: int) -> str:
    return json.dumps({"type": "progress", "version": version})


async def test_a_socket_that_keeps_up_gets_everything() -> None:
    sock, metrics = GatedSocket(), Metrics()
    sock.gate.set()
    outbox = Outbox(sock, metrics)
    for version in range(1, 201):
        outbox.push(progress(version), coalescible=True)
        await asyncio.sleep(0)  # the writer runs between pushes, as events arrive
    outbox.close(1000)
    await asyncio.wait_for(sock.closed_event.wait(), 5)
    assert [json.loads(m)["version"] for m in sock.sent] == list(range(1, 201))
    assert metrics.messages_dropped._value.get() == 0


async def test_a_slow_socket_loses_only_intermediate_progress() -> None:
    sock, metrics = GatedSocket(), Metrics()
    outbox = Outbox(sock, metrics)
    outbox.push(json.dumps({"type": "status", "version": 1}))
    for version in range(2, 300):
        outbox.push(progress(version), coalescible=True)
        if version == 150:
            outbox.push(json.dumps({"type": "status", "version": 151}))
    assert len(outbox) <= COALESCE_AT + 2
    outbox.push(json.dumps({"type": "complete", "version": 300}))
    outbox.close(1000)
    outbox.push(progress(301), coalescible=True)  # after close: ignored
    sock.gate.set()
    await asyncio.wait_for(sock.closed_event.wait(), 5)
    got = [(json.loads(m)["type"], json.loads(m)["version"]) for m in sock.sent]
    seen = [v for _, v in got]
    assert seen == sorted(set(seen))  # strictly increasing
    assert ("status", 1) in got and ("status", 151) in got and got[-1] == ("complete", 300)
    assert ("progress", 299) in got  # latest wins
    assert len(got) < 100
    assert metrics.messages_dropped._value.get() == 301 - len(got)  # every push accounted
    assert sock.close_code == 1000


async def test_a_ping_finds_the_pending_pong_and_adds_nothing() -> None:
    sock, metrics = GatedSocket(), Metrics()
    outbox = Outbox(sock, metrics)
    outbox.push(json.dumps({"type": "status", "version": 1}))
    for _ in range(10_000):
        outbox.pong()
    assert len(outbox) == 2 and queued(metrics) == 2
    sock.gate.set()

    async def delivered(count: int) -> None:
        while len(sock.sent) < count:
            sock.sent_more.clear()
            await sock.sent_more.wait()

    await asyncio.wait_for(delivered(2), 5)
    assert sock.sent[1] == PONG and queued(metrics) == 0
    outbox.pong()  # the last one went out: a new ping gets its own pong
    await asyncio.wait_for(delivered(3), 5)
    assert sock.sent[2:] == [PONG]
    outbox.close(1000)
    await asyncio.wait_for(sock.closed_event.wait(), 5)
    assert sock.close_code == 1000 and metrics.overflow_closes._value.get() == 0


async def test_coalescing_and_the_one_pong_keep_a_socket_below_the_caps() -> None:
    sock, metrics = GatedSocket(), Metrics()
    outbox = Outbox(sock, metrics)
    for version in range(1, 20_001):  # a client that pings between every progress message
        outbox.push(progress(version), coalescible=True)
        outbox.pong()
    assert len(outbox) <= COALESCE_AT + 2
    assert not sock.closed and metrics.overflow_closes._value.get() == 0


@pytest.mark.parametrize(
    ("count", "size"),
    [(MAX_QUEUED + 1, 20), (2, MAX_QUEUED_BYTES // 2 + 1)],
    ids=["messages", "bytes"],
)
async def test_past_a_hard_cap_the_socket_is_closed_1008_at_once(count: int, size: int) -> None:
    sock, metrics = GatedSocket(), Metrics()  # a reader that never reads
    outbox = Outbox(sock, metrics)
    for version in range(1, count):
        outbox.push(json.dumps({"type": "status", "version": version, "pad": "x" * size}))
    assert not sock.closed and queued(metrics) == count - 1
    outbox.push(json.dumps({"type": "status", "version": count, "pad": "x" * size}))
    await asyncio.wait_for(sock.closed_event.wait(), 5)
    assert (sock.close_code, sock.sent) == (CLOSE_OVERFLOW, [])  # nothing queued goes first
    assert len(outbox) == 0 and queued(metrics) == 0
    assert metrics.overflow_closes._value.get() == 1
    outbox.push(progress(count + 1))
    outbox.pong()
    assert len(outbox) == 0  # closed: nothing is queued any more
    await outbox.aclose()


async def test_a_peer_that_cannot_take_the_close_either_is_cut_off() -> None:
    sock, metrics, transport = GatedSocket(close_waits=True), Metrics(), Transport()
    outbox = Outbox(sock, metrics, transport)
    for version in range(1, MAX_QUEUED + 2):
        outbox.push(json.dumps({"type": "status", "version": version}))
    await asyncio.wait_for(transport.aborted.wait(), 30)  # after the close's timeout
    assert sock.close_code == CLOSE_OVERFLOW and not sock.closed_event.is_set()
    await outbox.aclose()
