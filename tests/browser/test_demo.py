"""The demo page against the real system (jobstate serve + jobstate gateway subprocesses, moto
S3): an export runs to completion and downloads; it completes by polling when WebSockets are
refused; it survives a gateway restart mid-job without progress going backwards; two tabs on
one job both finish; cancel and start failures reach the person."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from playwright.async_api import BrowserContext, Page, ViewportSize, expect
from support.fakerunpod import FakeRunPod

from browser.system import System
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

pytestmark = pytest.mark.asyncio(loop_scope="module")

FINISH = 30_000  # ms: generous upper bound for a job to finish; never a pace assertion
LAPTOP: ViewportSize = {"width": 1280, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 844}

# Records every value the progress bar shows and every transport the page reports, so a test
# can check the whole history rather than a final state.
RECORDER = """
window.__progress = [];
window.__modes = [];
document.addEventListener("DOMContentLoaded", () => {
  const bar = document.getElementById("progress");
  if (!bar) return; // not the demo page (e.g. a download opened in the tab)
  new MutationObserver(() => __progress.push(Number(bar.getAttribute("aria-valuenow"))))
    .observe(bar, { attributes: true, attributeFilter: ["aria-valuenow"] });
  const badge = document.getElementById("transport");
  new MutationObserver(() => __modes.push(badge.dataset.mode))
    .observe(badge, { attributes: true, attributeFilter: ["data-mode"] });
});
"""


async def open_demo(page: Page, system: System, user: str | None = None) -> None:
    await page.add_init_script(RECORDER)
    await page.goto(f"{system.url}/?user={user or 'u-' + uuid.uuid4().hex[:8]}")
    await expect(page.locator("#start")).to_be_enabled()


async def start_export(page: Page) -> str:
    await page.locator("#overlay-text").fill("Browser test")
    await page.locator("#start").click()
    await expect(page.locator("#job-card")).to_be_visible()
    await expect(page.locator("#job-id")).not_to_have_text("")
    return await page.locator("#job-id").inner_text()


async def expect_complete(page: Page) -> None:
    await expect(page.locator("#status")).to_have_text("Complete", timeout=FINISH)
    await expect(page.locator("#progress")).to_have_attribute("aria-valuenow", "100")
    await expect(page.locator("#progress-text")).to_have_text("100%")


async def progress_history(page: Page) -> list[int]:
    return cast(list[int], await page.evaluate("window.__progress"))


async def modes(page: Page) -> list[str]:
    return cast(list[str], await page.evaluate("window.__modes"))


async def test_export_completes_and_download_serves_the_file(
    page: Page, sim_system: System, artifacts: Path
) -> None:
    system = sim_system
    await page.set_viewport_size(LAPTOP)
    await open_demo(page, system)
    job_id = await start_export(page)
    await expect_complete(page)

    shown = await progress_history(page)
    assert shown == sorted(shown), f"progress went backwards: {shown}"
    assert "websocket" in await modes(page)
    row = page.locator(f'.job-row[data-job-id="{job_id}"]')
    await expect(row.locator(".pill")).to_have_text("Complete")

    link = page.locator("#download")
    await expect(link).to_have_text("Download")
    href = await link.get_attribute("href")
    assert href is not None and href.startswith("http")
    response = await page.request.get(href)  # the browser's own HTTP stack, not ours
    assert (response.status, await response.body()) == (
        200,
        f"simulated export {job_id}\n".encode(),
    )

    await page.screenshot(
        path=str(artifacts / "demo-laptop.png"), full_page=True, animations="disabled"
    )
    await page.set_viewport_size(PHONE)
    await page.screenshot(
        path=str(artifacts / "demo-phone.png"), full_page=True, animations="disabled"
    )


async def test_completes_by_polling_when_websockets_are_refused(
    page: Page, context: BrowserContext, sim_system: System
) -> None:
    system = sim_system
    refused: list[str] = []

    async def refuse(ws: Any) -> None:
        refused.append(ws.url)
        await ws.close(code=1011, reason="refused by the test")

    # The page's one socket (/api/ws) and any single-job socket.
    await context.route_web_socket(re.compile(r"/api/(jobs/.*/)?ws"), refuse)
    await open_demo(page, system)
    await start_export(page)
    await expect_complete(page)

    assert refused, "the page never tried a WebSocket"
    seen = await modes(page)
    assert "polling" in seen and "websocket" not in seen, seen
    shown = await progress_history(page)
    assert shown == sorted(shown), f"progress went backwards: {shown}"
    await expect(page.locator("#download")).to_have_text("Download")


async def report_progress(system: System, job_id: str, progress: float, message: str) -> None:
    async with grpc.aio.insecure_channel(system.service_target) as channel:
        stub = pb_grpc.JobStateServiceStub(channel)
        request = pb.ReportProgressRequest(job_id=job_id, progress=progress, message=message)
        await stub.ReportProgress(request, timeout=10)


async def test_reconnects_after_a_gateway_restart_without_going_backwards(
    page: Page,
    make_system: Callable[..., Awaitable[System]],
    fake_runpod: FakeRunPod,
    artifacts: Path,
) -> None:
    system = await make_system(runpod_url=fake_runpod.url)
    await open_demo(page, system)
    job_id = await start_export(page)
    run = await fake_runpod.next_submission()
    assert run["job_id"] == job_id
    for value in (10, 20, 30):
        body = {"status": "progress", "progress": value, "message": f"Rendering {value}"}
        assert await system.callback(run["callback_url"], body) == 200
    await expect(page.locator("#progress-text")).to_have_text("30%")
    await page.screenshot(
        path=str(artifacts / "demo-running.png"), full_page=True, animations="disabled"
    )

    assert await system.stop_gateway() == 0
    # Changes while the gateway is down must arrive after the reconnect (replay from `after`).
    await report_progress(system, job_id, 50, "Rendering 50 (while the gateway was down)")
    await system.start_gateway()
    await expect(page.locator("#progress-text")).to_have_text("50%", timeout=FINISH)
    await expect(page.locator("#message")).to_have_text("Rendering 50 (while the gateway was down)")

    # The page may have polled meanwhile; it must be back on a socket (back-off ≤ 15 s).
    await expect(page.locator("#transport")).to_have_attribute(
        "data-mode", "websocket", timeout=FINISH
    )

    body = {"status": "progress", "progress": 80, "message": "Encoding"}
    assert await system.callback(run["callback_url"], body) == 200
    await expect(page.locator("#progress-text")).to_have_text("80%")
    done = {"status": "complete", "output_key": f"exports/{job_id}/{job_id}.mp4"}
    assert await system.callback(run["callback_url"], done) == 200
    await expect_complete(page)

    shown = await progress_history(page)
    assert shown == sorted(shown), f"progress went backwards: {shown}"
    assert {30, 50, 80, 100} <= set(shown), shown
    seen = await modes(page)
    first = seen.index("websocket")
    assert "websocket" in seen[first + 1 :], f"no reconnect recorded: {seen}"


async def test_two_tabs_on_one_job_both_finish(
    context: BrowserContext, runpod_system: System, fake_runpod: FakeRunPod
) -> None:
    system = runpod_system
    user = "two-tabs-" + uuid.uuid4().hex[:8]
    first = await context.new_page()
    await open_demo(first, system, user=user)
    job_id = await start_export(first)
    run = await fake_runpod.next_submission()
    body = {"status": "progress", "progress": 25, "message": "Rendering 25"}
    assert await system.callback(run["callback_url"], body) == 200

    second = await context.new_page()
    await second.add_init_script(RECORDER)
    await second.goto(f"{system.url}/?user={user}&job={job_id}")
    for tab in (first, second):
        await expect(tab.locator("#progress-text")).to_have_text("25%")

    body = {"status": "progress", "progress": 60, "message": "Rendering 60"}
    assert await system.callback(run["callback_url"], body) == 200
    for tab in (first, second):
        await expect(tab.locator("#progress-text")).to_have_text("60%")
    done = {"status": "complete", "output_key": f"exports/{job_id}/{job_id}.mp4"}
    assert await system.callback(run["callback_url"], done) == 200
    for tab in (first, second):
        await expect_complete(tab)
        shown = await progress_history(tab)
        assert shown == sorted(shown), f"progress went backwards: {shown}"


async def test_cancel_and_start_failures_are_shown(
    page: Page, runpod_system: System, fake_runpod: FakeRunPod, artifacts: Path
) -> None:
    system = runpod_system
    await open_demo(page, system)
    await start_export(page)
    run = await fake_runpod.next_submission()
    await expect(page.locator("#cancel")).to_be_enabled()
    await page.locator("#cancel").click()
    await expect(page.locator("#status")).to_have_text("Cancelled")
    await expect(page.locator("#cancel")).to_be_hidden()
    # The page may hear of the cancellation before the gateway's call to RunPod lands.
    await fake_runpod.wait_cancelled(run["id"])

    fake_runpod.run_status = 500
    await page.locator("#start").click()
    alert = page.locator("#alert")
    await expect(alert).to_be_visible()
    await expect(alert).to_contain_text("Could not start the export")
    await page.set_viewport_size(PHONE)
    await page.screenshot(
        path=str(artifacts / "demo-error-phone.png"), full_page=True, animations="disabled"
    )
    await expect(page.locator(".job-row .pill").first).to_have_text("Failed")


async def test_unknown_job_is_reported_to_the_person(page: Page, sim_system: System) -> None:
    await page.goto(f"{sim_system.url}/?user=u-{uuid.uuid4().hex[:8]}&job=no-such-job")
    alert = page.locator("#alert")
    await expect(alert).to_be_visible()
    await expect(alert).to_contain_text("no-such-job does not exist, or it is not yours")
    await expect(page.locator("#job-card")).to_be_hidden()


async def test_production_page_asks_for_a_token(
    page: Page, make_system: Callable[..., Awaitable[System]], artifacts: Path
) -> None:
    system = await make_system(environment="production")
    await open_demo_signed_out(page, system)
    await page.screenshot(path=str(artifacts / "demo-signin.png"), full_page=True)
    await page.locator("#token-input").fill(System.token("prod-user"))
    await page.locator("#signin-form button").click()
    await expect(page.locator("#user-id")).to_have_text("prod-user")
    await start_export(page)
    await expect_complete(page)


async def open_demo_signed_out(page: Page, system: System) -> None:
    await page.goto(system.url + "/")
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page.locator("#start")).to_be_disabled()
