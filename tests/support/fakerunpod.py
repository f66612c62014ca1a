"""A fake RunPod serverless endpoint: a real aiohttp server on loopback.

`jobs[external_id] = (http_status, body)` decides what `/status/{id}` answers; unknown ids
get 404 like RunPod. `/run` accepts everything (IN_QUEUE, a new id) and runs nothing.
Every request is recorded as (method, path, authorization header).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


class FakeRunPod:
    def __init__(self) -> None:
        self.jobs: dict[str, tuple[int, Any]] = {}
        self.requests: list[tuple[str, str, str]] = []
        self.cancelled: list[str] = []
        app = web.Application()
        app.router.add_get("/status/{id}", self._status)
        app.router.add_post("/cancel/{id}", self._cancel)
        app.router.add_post("/run", self._run)
        self._server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self._server.make_url("")).rstrip("/")

    async def start(self) -> None:
        await self._server.start_server()

    async def close(self) -> None:
        await self._server.close()

    def _record(self, request: web.Request) -> None:
        auth = request.headers.get("Authorization", "")
        self.requests.append((request.method, request.path, auth))

    async def _status(self, request: web.Request) -> web.Response:
        self._record(request)
        external_id = request.match_info["id"]
        status, body = self.jobs.get(external_id, (404, {"error": "request does not exist"}))
        if isinstance(body, str):
            return web.Response(status=status, text=body)
        return web.json_response(body, status=status)

    async def _run(self, request: web.Request) -> web.Response:
        self._record(request)
        external_id = f"rp-run-{len(self.requests)}"
        self.jobs[external_id] = (200, {"id": external_id, "status": "IN_QUEUE"})
        return web.json_response({"id": external_id, "status": "IN_QUEUE"})

    async def _cancel(self, request: web.Request) -> web.Response:
        self._record(request)
        external_id = request.match_info["id"]
        self.cancelled.append(external_id)
        return web.json_response({"id": external_id, "status": "CANCELLED"})
