"""One socket per page (`JobState.connect`, `GET /api/ws`) in Chromium against the real system:
two jobs progress at once in the demo's live list over one socket; a job started in another
tab appears by itself; a gateway restart mid-way misses and repeats nothing; a foreign job's
4404 subscription error leaves the other watches alive."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from playwright.async_api import BrowserContext, Locator, Page, expect
from support.fakerunpod import FakeRunPod

from browser.system import System
from browser.test_demo import FINISH, LAPTOP, open_demo, report_progress, start_export

pytestmark = pytest.mark.asyncio(loop_scope="module")


def user() -> str:
    return "mux-" + uuid.uuid4().hex[:8]


def row(page: Page, job_id: str) -> Locator:
    return page.locator(f'.job-row[data-job-id="{job_id}"]')


async def test_two_jobs_progress_at_once_in_the_live_list_over_one_socket(
    page: Page, runpod_system: System, fake_runpod: FakeRunPod, artifacts: Path
) -> None:
    system = runpod_system
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    who = user()
    await page.set_viewport_size(LAPTOP)
    await open_demo(page, system, user=who)
    first, second = await system.start_export(who), await system.start_export(who)
    runs = {}
    for _ in range(2):
        run = await fake_runpod.next_submission()
        runs[run["job_id"]] = run["callback_url"]
    for job_id in (first, second):  # started elsewhere: they appear without a refresh
        await expect(row(page, job_id)).to_be_visible(timeout=FINISH)
    for step in (20, 40, 60):
        for job_id, offset in ((first, 0), (second, 5)):
            body = {"status": "progress", "progress": step + offset, "message": "Rendering"}
            assert await system.callback(runs[job_id], body) == 200
        await expect(row(page, first).locator(".job-row-pct")).to_have_text(f"{step}%")
        await expect(row(page, second).locator(".job-row-pct")).to_have_text(f"{step + 5}%")
    await page.screenshot(
        path=str(artifacts / "mux-live-list.png"), full_page=True, animations="disabled"
    )
    done = {"status": "complete", "output_key": f"exports/{first}/{first}.mp4"}
    assert await system.callback(runs[first], done) == 200
    await expect(row(page, first).locator(".pill")).to_have_text("Complete")
    assert [url.split("?")[0].split("/api")[1] for url in sockets] == ["/ws"], sockets


async def test_a_job_started_in_another_tab_appears_by_itself(
    context: BrowserContext, sim_system: System
) -> None:
    who = user()
    first = await context.new_page()
    await open_demo(first, sim_system, user=who)
    second = await context.new_page()
    await open_demo(second, sim_system, user=who)
    job_id = await start_export(second)
    await expect(row(first, job_id)).to_be_visible(timeout=FINISH)
    await expect(row(first, job_id).locator(".pill")).to_have_text("Complete", timeout=FINISH)


# A connection of the page's own, recording every callback as [kind, job id, version].
RECORD = """async ({ user, jobs }) => {
  const token = await JobState.devToken(user);
  window.__seen = [];
  const seen = (kind) => (s) => window.__seen.push([kind, s.jobId, s.version, s.progress]);
  const conn = JobState.connect({ token, backoffMax: 1000 });
  conn.watchMyJobs({
    onJobs: (list) => list.forEach(seen("list")),
    onJob: seen("feed"),
  });
  for (const id of jobs) {
    conn.watchJob(id, {
      onStatus: seen("job"), onProgress: seen("job"), onComplete: seen("end"),
      onError: (err) => window.__seen.push(["error", id, err.kind]),
    });
  }
  window.__conn = conn;
}"""


async def seen(page: Page) -> list[list[Any]]:
    return cast(list[list[Any]], await page.evaluate("window.__seen"))


async def until_seen(page: Page, entry: list[Any]) -> None:
    await page.wait_for_function(
        "(entry) => window.__seen.some((e) => JSON.stringify(e.slice(0, entry.length)) ==="
        " JSON.stringify(entry))",
        arg=entry,
        timeout=FINISH,
    )


async def test_a_gateway_restart_mid_way_misses_and_repeats_nothing(
    page: Page, make_system: Callable[..., Awaitable[System]], fake_runpod: FakeRunPod
) -> None:
    system = await make_system(runpod_url=fake_runpod.url)
    who = user()
    jobs = [await system.start_export(who), await system.start_export(who)]
    runs = {}
    for _ in jobs:
        run = await fake_runpod.next_submission()
        runs[run["job_id"]] = run["callback_url"]
    await open_demo(page, system, user=who)
    await page.evaluate(RECORD, {"user": who, "jobs": jobs})
    for job_id in jobs:
        await until_seen(page, ["job", job_id, 2])
        body = {"status": "progress", "progress": 10, "message": "Rendering"}
        assert await system.callback(runs[job_id], body) == 200
        await until_seen(page, ["job", job_id, 3])
    assert await system.stop_gateway() == 0
    for job_id in jobs:  # while the gateway is down
        await report_progress(system, job_id, 30, "Rendering 30")
        await report_progress(system, job_id, 40, "Rendering 40")
    await system.start_gateway()
    for job_id in jobs:
        await until_seen(page, ["job", job_id, 5])
        done = {"status": "complete", "output_key": f"exports/{job_id}/{job_id}.mp4"}
        assert await system.callback(runs[job_id], done) == 200
        await until_seen(page, ["end", job_id, 6])
        await until_seen(page, ["feed", job_id, 6])
    events = await seen(page)
    for job_id in jobs:
        versions = [e[2] for e in events if e[0] == "job" and e[1] == job_id]
        versions = [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]
        assert versions == [2, 3, 4, 5, 6], events  # every version once, in order
        known = 0  # onJobs lists each job again on a reload; onJob only newer versions
        for kind, _, version, _ in (e for e in events if e[1] == job_id):
            if kind == "feed":
                assert version > known, events
            if kind in ("feed", "list"):
                known = max(known, version)
        assert known == 6


async def test_a_foreign_job_is_not_found_and_the_others_go_on(
    page: Page, runpod_system: System, fake_runpod: FakeRunPod
) -> None:
    system = runpod_system
    who = user()
    mine = await system.start_export(who)
    theirs = await system.start_export(user())
    runs = {}
    for _ in range(2):
        run = await fake_runpod.next_submission()
        runs[run["job_id"]] = run["callback_url"]
    await open_demo(page, system, user=who)
    await page.evaluate(RECORD, {"user": who, "jobs": [theirs, mine]})
    await until_seen(page, ["error", theirs, "not_found"])
    body = {"status": "progress", "progress": 50, "message": "Rendering"}
    assert await system.callback(runs[mine], body) == 200
    assert await system.callback(runs[theirs], body) == 200
    await until_seen(page, ["job", mine, 3, 50])
    events = await seen(page)
    assert not [e for e in events if e[1] == theirs and e[0] != "error"], events
