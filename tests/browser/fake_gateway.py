"""A scriptable stand-in for the gateway's job routes, to test jobstate-client.js precisely.

It serves `gateway/static/`, a bare harness page at `/`, `GET /api/jobs/{id}` from a dict the
test edits, the job WebSocket and the multiplexed one (`/api/ws`, whose `job_id` is ""). Every
accepted socket is handed to the test through `connections` as a `FakeSocket`, so the test
decides what the client receives and when. Token `good` is the only valid one; a job id missing
from `jobs` is closed with 4404.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

STATIC = Path(__file__).resolve().parents[2] / "gateway" / "static"
GOOD_TOKEN = "good"

# The harness records what the client reports as small arrays the test compares in one `==`.
HARNESS = """<!doctype html>
<meta charset="utf-8"><title>jobstate-client harness</title>
<script src="/static/jobstate-client.js"></script>
<script>
window.events = [];
window.modes = [];
window.startWatch = function (jobId, options) {
  const opts = Object.assign({
    token: "good",
    onStatus: (s) => events.push(["status", s.status, s.version, s.progress]),
    onProgress: (s) => events.push(["progress", s.version, s.progress, s.message]),
    onComplete: (s) => events.push(["complete", s.version, s.outputUrl]),
    onCancelled: (s) => events.push(["cancelled", s.version]),
    onError: (e) => events.push(["error", e.kind, e.message]),
    onConnection: (m) => modes.push(m),
  }, options || {});
  window.watcher = JobState.watchJob(jobId, opts);
};
// One connection (JobState.connect): watches record [callback, job id, ...].
window.startConnection = function (options) {
  window.conn = JobState.connect(Object.assign({
    token: "good",
  }, options || {}));
  window.connWatch = function (jobId) {
    return conn.watchJob(jobId, {
      onStatus: (s) => events.push(["status", jobId, s.status, s.version]),
      onProgress: (s) => events.push(["progress", jobId, s.version, s.progress]),
      onComplete: (s) => events.push(["complete", jobId, s.version]),
      onError: (e) => events.push(["error", jobId, e.kind]),
      onConnection: (m) => modes.push(m),
    });
  };
  window.connFeed = function (tag) {
    const name = (kind) => (tag ? tag + " " + kind : kind);
    return conn.watchMyJobs({
      onJobs: (list) => events.push([name("jobs"), list.map((j) => [j.jobId, j.version])]),
      onJob: (s) => events.push([name("job"), s.jobId, s.version, s.status]),
    });
  };
};
</script>
"""


@dataclass
class FakeSocket:
    """One accepted client socket: what it asked for, what it sent, and a way to answer."""

    ws: web.WebSocketResponse
    job_id: str
    after: str | None
    received: list[dict[str, Any]] = field(default_factory=list)
    pings: asyncio.Queue[None] = field(default_factory=asyncio.Queue)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, **message: Any) -> None:
        await self.ws.send_str(json.dumps(message))

    async def close(self, code: int) -> None:
        await self.ws.close(code=code)


class FakeGateway:
    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.connections: asyncio.Queue[FakeSocket] = asyncio.Queue()
        self.refuse_websockets = False
        self.answer_pings = True
        self.polls = 0
        self.poll_arrivals: asyncio.Queue[None] = asyncio.Queue()
        self.app = web.Application()
        self.app.router.add_get("/", self._harness)
        self.app.router.add_static("/static/", STATIC)
        self.app.router.add_get("/api/jobs/{job_id}", self._get_job)
        self.app.router.add_get("/api/jobs/{job_id}/ws", self._socket)
        self.app.router.add_get("/api/ws", self._socket)
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self.url = ""

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()

    async def next_connection(self, within: float = 10) -> FakeSocket:
        return await asyncio.wait_for(self.connections.get(), within)

    async def _harness(self, request: web.Request) -> web.Response:
        return web.Response(text=HARNESS, content_type="text/html")

    async def _get_job(self, request: web.Request) -> web.Response:
        self.polls += 1
        self.poll_arrivals.put_nowait(None)
        if request.headers.get("Authorization") != f"Bearer {GOOD_TOKEN}":
            return web.json_response({"error": "bad token"}, status=401)
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            return web.json_response({"error": "no such job"}, status=404)
        return web.json_response(job)

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_websockets:
            raise web.HTTPForbidden(text="websockets refused by the test")
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        self._sockets.add(ws)
        job_id = request.match_info.get("job_id", "")  # "" on the multiplexed /api/ws
        if request.query.get("token") != GOOD_TOKEN:
            await ws.close(code=4401)
            return ws
        if job_id and job_id not in self.jobs:
            await ws.close(code=4404)
            return ws
        sock = FakeSocket(ws, job_id, request.query.get("after"))
        self.connections.put_nowait(sock)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                sock.received.append(data)
                if data.get("type") == "ping":
                    sock.pings.put_nowait(None)
                    if self.answer_pings:
                        await ws.send_str('{"type":"pong"}')
        finally:
            sock.closed.set()
            self._sockets.discard(ws)
        return ws
