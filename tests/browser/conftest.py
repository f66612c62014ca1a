"""Fixtures for the browser tests: Debian's Chromium driven by Playwright (async API).

Every test here skips, with the reason, when /usr/bin/chromium is absent (`.ci/run` installs
it). One browser per module (test modules run on a module-scoped event loop for that), a fresh
context per test; nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page
from support.fakerunpod import FakeRunPod

from browser.fake_gateway import FakeGateway
from browser.system import System, s3_server

CHROMIUM = Path(os.environ.get("JOBSTATE_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(
        reason=f"Chromium not found at {CHROMIUM}: `apt-get install -y chromium` to run the "
        "browser tests (.ci/run does)"
    )
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context()
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    assert errors == [], f"uncaught errors in the page: {errors}"


@pytest_asyncio.fixture(loop_scope="module")
async def fake_gateway() -> AsyncIterator[FakeGateway]:
    fake = FakeGateway()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    with s3_server() as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_runpod() -> AsyncIterator[FakeRunPod]:
    runpod = FakeRunPod()
    await runpod.start()
    try:
        yield runpod
    finally:
        await runpod.close()


@pytest.fixture
def fake_runpod(shared_runpod: FakeRunPod) -> FakeRunPod:
    """The module's fake RunPod, reset for this test."""
    shared_runpod.reset()
    return shared_runpod


async def _start_system(workdir: Path, s3_url: str, **kw: Any) -> System:
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    system = System(workdir=workdir, s3_url=s3_url, **kw)
    try:
        await system.start()
    except BaseException:
        await system.stop()
        raise
    return system


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sim_system(
    tmp_path_factory: pytest.TempPathFactory, s3_url: str
) -> AsyncIterator[System]:
    """Service + gateway with the built-in simulated worker, shared by a module's tests."""
    system = await _start_system(tmp_path_factory.mktemp("sim") / "system", s3_url)
    yield system
    await system.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runpod_system(
    tmp_path_factory: pytest.TempPathFactory, s3_url: str, shared_runpod: FakeRunPod
) -> AsyncIterator[System]:
    """Service + gateway submitting to the fake RunPod (the test sets the pace)."""
    workdir = tmp_path_factory.mktemp("runpod") / "system"
    system = await _start_system(workdir, s3_url, runpod_url=shared_runpod.url)
    yield system
    await system.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def make_system(
    tmp_path: Path, s3_url: str
) -> AsyncIterator[Callable[..., Awaitable[System]]]:
    """Factory for a system of the test's own (e.g. one it restarts); stopped after the test."""
    started: list[System] = []

    async def make(**kw: Any) -> System:
        system = await _start_system(tmp_path / f"system{len(started)}", s3_url, **kw)
        started.append(system)
        return system

    try:
        yield make
    finally:
        for system in started:
            await system.stop()
