"""jobstate-client.js in Chromium against a scripted fake gateway: ordering, reconnects,
close codes, pings and the polling fallback, each decided by the test, message by message."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import pytest
from playwright.async_api import Page

from browser.fake_gateway import FakeGateway, FakeSocket

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Fast transport timings so reconnects and polls happen quickly; jitter stays on.
FAST = {"backoffInitial": 50, "backoffMax": 200, "pollInterval": 100}


async def watch(page: Page, fake: FakeGateway, job_id: str, **options: Any) -> None:
    await page.goto(fake.url + "/")
    await page.evaluate("([id, opts]) => startWatch(id, opts)", [job_id, {**FAST, **options}])


async def wait_for_event(page: Page, *event: Any) -> None:
    await page.wait_for_function(
        "e => window.events.some(x => JSON.stringify(x) === e)",
        arg=json.dumps(list(event), separators=(",", ":")),
    )


async def events(page: Page) -> list[list[Any]]:
    return cast(list[list[Any]], await page.evaluate("window.events"))


async def modes(page: Page) -> list[str]:
    return cast(list[str], await page.evaluate("window.modes"))


async def assert_no_connection(fake: FakeGateway) -> None:
    with pytest.raises(TimeoutError):
        await fake.next_connection(within=0.5)


async def open_socket(fake: FakeGateway) -> FakeSocket:
    sock = await fake.next_connection()
    await asyncio.wait_for(sock.pings.get(), 10)  # the client pings as soon as it is open
    return sock


async def test_delivers_in_order_and_drops_replays_and_duplicates(
    page: Page, fake_gateway: FakeGateway
) -> None:
    fake_gateway.jobs["j1"] = {}
    await watch(page, fake_gateway, "j1")
    sock = await open_socket(fake_gateway)
    assert sock.after is None

    await sock.send(type="status", job_id="j1", status="pending", progress=0, version=1)
    await sock.send(type="progress", job_id="j1", progress=10, message="Decoding", version=2)
    await sock.send(type="progress", job_id="j1", progress=10, message="Decoding", version=2)
    await sock.send(type="progress", job_id="j1", progress=5, message="stale", version=1)
    await sock.send(type="status", job_id="j1", status="pending", progress=0, version=1)
    await sock.send(type="progress", job_id="j1", progress=25, message="Rendering", version=3)
    url = "/api/storage/presigned-url?key=exports%2Fj1.mp4"
    await sock.send(type="complete", job_id="j1", output_url=url, version=4)
    await wait_for_event(page, "complete", 4, url)
    await asyncio.wait_for(sock.closed.wait(), 10)

    assert await events(page) == [
        ["status", "pending", 1, 0],
        ["status", "processing", 2, 10],
        ["progress", 2, 10, "Decoding"],
        ["progress", 3, 25, "Rendering"],
        ["status", "complete", 4, 100],
        ["progress", 4, 100, "Rendering"],
        ["complete", 4, url],
    ]
    assert await modes(page) == ["connecting", "websocket", "closed"]
    await assert_no_connection(fake_gateway)


async def test_reconnects_with_after_and_shows_nothing_twice(
    page: Page, fake_gateway: FakeGateway
) -> None:
    fake_gateway.jobs["j1"] = {}
    await watch(page, fake_gateway, "j1")
    first = await open_socket(fake_gateway)
    await first.send(type="status", job_id="j1", status="processing", progress=20, version=2)
    await first.close(1001)  # the gateway shutting down

    second = await open_socket(fake_gateway)
    assert second.after == "2"
    await second.send(type="progress", job_id="j1", progress=20, message="replayed", version=2)
    await second.send(type="progress", job_id="j1", progress=40, message="Rendering", version=3)
    await wait_for_event(page, "progress", 3, 40, "Rendering")
    await second.close(1011)  # any other drop reconnects too

    third = await open_socket(fake_gateway)
    assert third.after == "3"
    await third.send(type="cancelled", job_id="j1", version=4)
    await wait_for_event(page, "cancelled", 4)

    assert await events(page) == [
        ["status", "processing", 2, 20],
        ["progress", 2, 20, ""],
        ["progress", 3, 40, "Rendering"],
        ["status", "cancelled", 4, 40],
        ["cancelled", 4],
    ]
    assert await modes(page) == [
        "connecting",
        "websocket",
        "connecting",
        "websocket",
        "connecting",
        "websocket",
        "closed",
    ]
    await assert_no_connection(fake_gateway)


@pytest.mark.parametrize(
    ("token", "job_id", "kind", "code"),
    [("bad", "j1", "unauthorized", 4401), ("good", "nope", "not_found", 4404)],
)
async def test_close_codes_end_the_watch_without_reconnecting(
    page: Page, fake_gateway: FakeGateway, token: str, job_id: str, kind: str, code: int
) -> None:
    fake_gateway.jobs["j1"] = {}
    await watch(page, fake_gateway, job_id, token=token)
    await page.wait_for_function("window.events.length > 0")
    [[name, got_kind, message]] = await events(page)
    assert (name, got_kind) == ("error", kind)
    assert str(code) in message
    assert await modes(page) == ["connecting", "closed"]
    assert fake_gateway.connections.empty()
    assert fake_gateway.polls == 0


async def test_polls_while_websockets_are_refused_and_switches_back(
    page: Page, fake_gateway: FakeGateway
) -> None:
    fake_gateway.refuse_websockets = True
    job = {"job_id": "j1", "status": "processing", "progress": 10, "message": "Queued"}
    fake_gateway.jobs["j1"] = {**job, "version": 2}
    await watch(page, fake_gateway, "j1", fallbackAfter=2)
    await wait_for_event(page, "progress", 2, 10, "Queued")
    assert "polling" in await modes(page)

    fake_gateway.jobs["j1"] = {**job, "progress": 30, "message": "Rendering", "version": 3}
    await wait_for_event(page, "progress", 3, 30, "Rendering")

    fake_gateway.refuse_websockets = False
    sock = await open_socket(fake_gateway)
    assert sock.after == "3"
    await page.wait_for_function("window.modes.at(-1) === 'websocket'")
    await sock.send(type="progress", job_id="j1", progress=60, message="Encoding", version=4)
    await wait_for_event(page, "progress", 4, 60, "Encoding")
    # Polling stopped with the switch: no request arrives for several poll intervals.
    while not fake_gateway.poll_arrivals.empty():
        fake_gateway.poll_arrivals.get_nowait()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(fake_gateway.poll_arrivals.get(), 0.5)
    await sock.send(type="error", job_id="j1", error="ffmpeg exited 1", version=5)
    await wait_for_event(page, "error", "job", "ffmpeg exited 1")

    assert await events(page) == [
        ["status", "processing", 2, 10],
        ["progress", 2, 10, "Queued"],
        ["progress", 3, 30, "Rendering"],
        ["progress", 4, 60, "Encoding"],
        ["status", "error", 5, 60],
        ["error", "job", "ffmpeg exited 1"],
    ]
    assert await modes(page) == ["connecting", "polling", "websocket", "closed"]


async def test_polling_alone_reaches_the_end(page: Page, fake_gateway: FakeGateway) -> None:
    fake_gateway.refuse_websockets = True
    fake_gateway.jobs["j1"] = {
        "job_id": "j1",
        "status": "complete",
        "progress": 100,
        "message": "Done",
        "output_key": "exports/u1/j1.mp4",
        "version": 7,
    }
    await watch(page, fake_gateway, "j1", fallbackAfter=1)
    url = "/api/storage/presigned-url?key=exports%2Fu1%2Fj1.mp4"
    await wait_for_event(page, "complete", 7, url)
    assert await events(page) == [
        ["status", "complete", 7, 100],
        ["progress", 7, 100, "Done"],
        ["complete", 7, url],
    ]
    assert await modes(page) == ["connecting", "polling", "closed"]


async def test_a_socket_that_stops_answering_pings_is_replaced(
    page: Page, fake_gateway: FakeGateway
) -> None:
    fake_gateway.jobs["j1"] = {}
    await watch(page, fake_gateway, "j1", pingInterval=100, pongTimeout=300)
    first = await open_socket(fake_gateway)
    await first.send(type="status", job_id="j1", status="processing", progress=5, version=1)
    fake_gateway.answer_pings = False

    second = await fake_gateway.next_connection()
    assert second.after == "1"
    assert [m["type"] for m in first.received][:2] == ["ping", "ping"]
    await asyncio.wait_for(first.closed.wait(), 10)


async def test_close_stops_the_watch(page: Page, fake_gateway: FakeGateway) -> None:
    fake_gateway.jobs["j1"] = {}
    await watch(page, fake_gateway, "j1")
    sock = await open_socket(fake_gateway)
    await sock.send(type="status", job_id="j1", status="processing", progress=5, version=1)
    await wait_for_event(page, "status", "processing", 1, 5)
    await page.evaluate("window.watcher.close()")
    await asyncio.wait_for(sock.closed.wait(), 10)
    assert await modes(page) == ["connecting", "websocket", "closed"]
    await assert_no_connection(fake_gateway)


async def test_websocket_null_polls_through_the_fetch_option(
    page: Page, fake_gateway: FakeGateway
) -> None:
    fake_gateway.jobs["j1"] = {"job_id": "j1", "status": "processing", "progress": 10, "version": 2}
    await page.goto(fake_gateway.url + "/")
    await page.evaluate(
        """([id, opts]) => {
          window.fetched = [];
          const viaOption = (url, init) => { fetched.push(url); return fetch(url, init); };
          startWatch(id, { ...opts, WebSocket: null, fetch: viaOption });
        }""",
        ["j1", FAST],
    )
    await wait_for_event(page, "status", "processing", 2, 10)
    fake_gateway.jobs["j1"] = {"job_id": "j1", "status": "cancelled", "progress": 10, "version": 3}
    await wait_for_event(page, "cancelled", 3)

    assert await modes(page) == ["polling", "closed"]
    fetched = await page.evaluate("window.fetched")
    assert fetched == [f"{fake_gateway.url}/api/jobs/j1"] * fake_gateway.polls
    assert fake_gateway.connections.empty()
