"""The per-socket outbox: latest-wins coalescing at >= 64 undelivered, never for status/close."""

from __future__ import annotations

import asyncio
import json

from gateway.metrics import Metrics
from gateway.outbox import COALESCE_AT, Outbox


class GatedSocket:
    """A socket that accepts nothing until `gate` is set, and records what it got."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.sent: list[str] = []
        self.close_code: int | None = None
        self.closed = False
        self.closed_event = asyncio.Event()

    async def send_str(self, data: str, compress: int | None = None) -> None:
        await self.gate.wait()
        self.sent.append(data)

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        self.close_code = code
        self.closed = True
        self.closed_event.set()
        return True


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
