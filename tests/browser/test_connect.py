"""`JobState.connect` in Chromium against the scripted fake gateway: what it asks for on the
multiplexed socket, and what reaches each watch, message by message — including a reconnect
that re-subscribes with each job's last version and the feed, and a 4404 subscription error
that ends one watch only."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import Page
from support.poll import eventually

from browser.fake_gateway import FakeGateway, FakeSocket
from browser.test_client import FAST, events, wait_for_event

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def connect(page: Page, fake: FakeGateway) -> None:
    await page.goto(fake.url + "/")
    await page.evaluate("(opts) => startConnection(opts)", FAST)


async def requests(sock: FakeSocket, count: int) -> list[dict[str, Any]]:
    """The first `count` non-ping messages the client sent on `sock`."""

    def sent() -> list[dict[str, Any]]:
        return [m for m in sock.received if m["type"] != "ping"]

    async def enough() -> bool:
        return len(sent()) >= count

    await eventually(enough, f"{count} requests from the client", within=10)
    return sent()


async def test_resubscribes_every_job_with_its_last_version_and_the_feed(
    page: Page, fake_gateway: FakeGateway
) -> None:
    await connect(page, fake_gateway)
    await page.evaluate("connWatch('j1'); connWatch('j2'); connFeed()")
    first = await fake_gateway.next_connection()
    assert first.job_id == ""
    assert await requests(first, 3) == [
        {"type": "subscribe", "job_id": "j1"},
        {"type": "subscribe", "job_id": "j2"},
        {"type": "subscribe", "jobs": "mine"},
    ]
    await first.send(type="subscribed", job_id="j1")
    await first.send(type="status", job_id="j1", status="processing", progress=0, version=2)
    await first.send(type="status", job_id="j2", status="pending", progress=0, version=1)
    await first.send(
        type="jobs",
        jobs=[
            {"job_id": "j2", "status": "pending", "version": 1, "created_at": "2026-01-02"},
            {"job_id": "j1", "status": "processing", "version": 2, "created_at": "2026-01-01"},
        ],
    )
    await first.send(type="progress", job_id="j1", progress=30, message="", version=3)
    await first.send(type="progress", job_id="j1", progress=30, message="", version=3)  # feed's
    await wait_for_event(page, "job", "j1", 3, "processing")
    await first.close(1001)

    second = await fake_gateway.next_connection()
    assert await requests(second, 3) == [
        {"type": "subscribe", "job_id": "j1", "after": 3},
        {"type": "subscribe", "job_id": "j2", "after": 1},
        {"type": "subscribe", "jobs": "mine"},
    ]
    await second.send(type="progress", job_id="j1", progress=30, message="", version=3)
    await second.send(type="progress", job_id="j1", progress=60, message="", version=4)
    await second.send(
        type="jobs",
        jobs=[
            {"job_id": "j3", "status": "pending", "version": 1, "created_at": "2026-01-03"},
            {"job_id": "j1", "status": "processing", "version": 4, "created_at": "2026-01-01"},
        ],
    )
    await second.send(type="complete", job_id="j1", output_url="/x", version=5)
    await wait_for_event(page, "job", "j1", 5, "complete")

    assert await events(page) == [
        ["status", "j1", "processing", 2],
        ["status", "j2", "pending", 1],
        ["jobs", [["j2", 1], ["j1", 2]]],
        ["progress", "j1", 3, 30],
        ["job", "j1", 3, "processing"],
        ["progress", "j1", 4, 60],
        ["job", "j1", 4, "processing"],
        ["jobs", [["j3", 1], ["j2", 1], ["j1", 4]]],
        ["status", "j1", "complete", 5],
        ["progress", "j1", 5, 100],
        ["complete", "j1", 5],
        ["job", "j1", 5, "complete"],
    ]


async def test_a_4404_subscription_error_ends_only_that_watch(
    page: Page, fake_gateway: FakeGateway
) -> None:
    await connect(page, fake_gateway)
    await page.evaluate("connWatch('mine'); connWatch('theirs')")
    sock = await fake_gateway.next_connection()
    await requests(sock, 2)
    await sock.send(type="subscription_error", job_id="theirs", code=4404, message="job not found")
    await sock.send(type="status", job_id="mine", status="processing", progress=0, version=2)
    await sock.send(type="status", job_id="theirs", status="processing", progress=0, version=2)
    await sock.send(type="progress", job_id="mine", progress=50, message="", version=3)
    await wait_for_event(page, "progress", "mine", 3, 50)
    assert await events(page) == [
        ["error", "theirs", "not_found"],
        ["status", "mine", "processing", 2],
        ["progress", "mine", 3, 50],
    ]
    await page.evaluate("conn.close()")
    await asyncio.wait_for(sock.closed.wait(), 10)


async def test_a_second_feed_watch_starts_from_what_the_first_knows(
    page: Page, fake_gateway: FakeGateway
) -> None:
    await connect(page, fake_gateway)
    await page.evaluate("connFeed()")
    sock = await fake_gateway.next_connection()
    assert await requests(sock, 1) == [{"type": "subscribe", "jobs": "mine"}]
    await sock.send(type="jobs", jobs=[{"job_id": "j1", "status": "pending", "version": 1}])
    await wait_for_event(page, "jobs", [["j1", 1]])
    await page.evaluate("connFeed('second')")  # the socket's feed is live: nothing to ask
    await sock.send(type="progress", job_id="j1", progress=10, message="", version=2)
    await wait_for_event(page, "second job", "j1", 2, "processing")
    assert await events(page) == [
        ["jobs", [["j1", 1]]],
        ["second jobs", [["j1", 1]]],
        ["job", "j1", 2, "processing"],
        ["second job", "j1", 2, "processing"],
    ]
    assert [m for m in sock.received if m["type"] != "ping"] == [
        {"type": "subscribe", "jobs": "mine"}
    ]


async def test_watching_a_watched_job_again_subscribes_it_anew(
    page: Page, fake_gateway: FakeGateway
) -> None:
    await connect(page, fake_gateway)
    await page.evaluate("connWatch('j1')")
    sock = await fake_gateway.next_connection()
    await requests(sock, 1)
    await sock.send(type="status", job_id="j1", status="processing", progress=0, version=2)
    await wait_for_event(page, "status", "j1", "processing", 2)
    await page.evaluate("connWatch('j1')")  # e.g. the page opened the same job again
    assert await requests(sock, 3) == [
        {"type": "subscribe", "job_id": "j1"},
        {"type": "unsubscribe", "job_id": "j1"},
        {"type": "subscribe", "job_id": "j1"},
    ]
    await sock.send(type="status", job_id="j1", status="processing", progress=0, version=2)
    await page.wait_for_function("window.events.length === 2")
    assert await events(page) == [["status", "j1", "processing", 2]] * 2
