"""A fake RunPod serverless endpoint: a real aiohttp server on loopback, the only one the tests
use (the gateway submits to it, the reconciler asks it, the browser tests pace jobs with it).

- `/run` answers IN_QUEUE with a fresh id (`rp-N`, N counting every request it ever got, or
  `run_id`), remembers that id's status, and queues the input plus the id for
  `next_submission()`; `run_status` other than 200 refuses with `{"error": error_text}`, and
  `before_run`, when set, is awaited first (to hold /run open or break something meanwhile).
- `/cancel/{id}` records the id in `cancelled`; `cancel_status` other than 200 refuses.
- `/status/{id}` answers `jobs[id] = (http_status, body)` (a str body as text), or 404 as
  RunPod does for an id it does not know; `before_status`, when set, is awaited first (to
  change a job while the reconciler is asking about it).
Every request is recorded in `requests` as (method, path, JSON body or None, Authorization).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Self

from aiohttp import web

from support.poll import eventually

WAIT = 15.0


class Request(NamedTuple):
    method: str
    path: str
    body: Any
    auth: str


class FakeRunPod:
    def __init__(self) -> None:
        self.jobs: dict[str, tuple[int, Any]] = {}
        self.requests: list[Request] = []
        self.cancelled: list[str] = []
        self.submitted: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.run_status = 200
        self.run_id: Any = None  # any JSON value, to answer a malformed id
        self.cancel_status = 200
        self.error_text = "boom"
        self.before_run: Callable[[], Awaitable[None]] | None = None
        self.before_status: Callable[[], Awaitable[None]] | None = None
        self.url = ""
        self._received = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/run", self._run)
        app.router.add_post("/cancel/{id}", self._cancel)
        app.router.add_get("/status/{id}", self._status)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def reset(self) -> None:
        """Forget what earlier tests did and answer normally again (for a shared instance);
        ids stay unique."""
        while not self.submitted.empty():
            self.submitted.get_nowait()
        self.jobs.clear()
        self.requests.clear()
        self.cancelled.clear()
        self.run_status = self.cancel_status = 200
        self.run_id = None
        self.error_text = "boom"
        self.before_run = self.before_status = None

    def paths(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]

    def calls(self) -> list[tuple[str, str, str]]:
        """(method, path, Authorization) of every request, in order."""
        return [(r.method, r.path, r.auth) for r in self.requests]

    async def next_submission(self, within: float = WAIT) -> dict[str, Any]:
        """The next accepted /run's input, its RunPod id added as "id"."""
        return await asyncio.wait_for(self.submitted.get(), within)

    async def wait_cancelled(self, external_id: str, within: float = WAIT) -> None:
        await eventually(
            lambda: external_id in self.cancelled,
            f"RunPod's cancel of {external_id}",
            within=within,
        )

    async def _record(self, request: web.Request) -> Request:
        self._received += 1
        body = await request.json() if request.can_read_body else None
        record = Request(
            request.method, request.path, body, request.headers.get("Authorization", "")
        )
        self.requests.append(record)
        return record

    async def _run(self, request: web.Request) -> web.Response:
        record = await self._record(request)
        if self.before_run is not None:
            await self.before_run()
        if self.run_status != 200:
            return web.json_response({"error": self.error_text}, status=self.run_status)
        external_id = f"rp-{self._received}" if self.run_id is None else self.run_id
        if isinstance(external_id, str):
            self.jobs[external_id] = (200, {"id": external_id, "status": "IN_QUEUE"})
        await self.submitted.put({**record.body["input"], "id": external_id})
        return web.json_response({"id": external_id, "status": "IN_QUEUE"})

    async def _cancel(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.cancel_status != 200:
            return web.json_response({"error": self.error_text}, status=self.cancel_status)
        external_id = request.match_info["id"]
        self.cancelled.append(external_id)
        return web.json_response({"id": external_id, "status": "CANCELLED"})

    async def _status(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.before_status is not None:
            await self.before_status()
        missing = (404, {"error": "request does not exist"})
        status, body = self.jobs.get(request.match_info["id"], missing)
        if isinstance(body, str):
            return web.Response(status=status, text=body)
        return web.json_response(body, status=status)
