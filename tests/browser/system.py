"""The real system on loopback for the browser tests: `jobstate serve` and `jobstate gateway`
as subprocesses (so a test can restart the gateway mid-job), moto's S3 server in a thread and,
where a test wants to set the pace itself, a fake RunPod that records submissions.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

JWT_SECRET = "browser-tests-jwt-secret-0123456789abcdef"
CALLBACK_SECRET = "browser-tests-callback-secret-0123456789ab"
BUCKET = "browser-test-exports"
S3_KEY = "testing"
START_WITHIN = 30.0


def free_port() -> int:
    # NOTE: another process could take the port between close and bind; on loopback in a test
    # run that would show up as a clear start-up failure, not a wrong result.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server on loopback with the test bucket; yields its URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_KEY,
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        server.stop()


@dataclass
class FakeRunPod:
    """Accepts `/run` like RunPod and hands each submission's input to the test, which then
    posts callbacks to `input["callback_url"]` at its own pace."""

    url: str = ""
    submissions: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    cancelled: list[str] = field(default_factory=list)
    run_status: int = 200
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/run", self._run)
        app.router.add_post("/cancel/{id}", self._cancel)
        app.router.add_get("/status/{id}", self._status)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def reset(self) -> None:
        while not self.submissions.empty():
            self.submissions.get_nowait()
        self.cancelled.clear()
        self.run_status = 200

    async def next_submission(self, within: float = 15) -> dict[str, Any]:
        return await asyncio.wait_for(self.submissions.get(), within)

    async def wait_cancelled(self, external_id: str, within: float = 15) -> None:
        """Until RunPod's cancel for `external_id` arrived; AssertionError after `within` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while external_id not in self.cancelled:
            if loop.time() > deadline:
                raise AssertionError(f"no cancel for {external_id} within {within} s")
            await asyncio.sleep(0.05)

    async def _run(self, request: web.Request) -> web.Response:
        if self.run_status != 200:
            return web.json_response({"error": "no capacity"}, status=self.run_status)
        body = await request.json()
        external_id = f"rp-{self.submissions.qsize()}-{id(body)}"
        self.submissions.put_nowait({**body["input"], "id": external_id})
        return web.json_response({"id": external_id, "status": "IN_QUEUE"})

    async def _cancel(self, request: web.Request) -> web.Response:
        self.cancelled.append(request.match_info["id"])
        return web.json_response({"id": request.match_info["id"], "status": "CANCELLED"})

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["id"], "status": "IN_PROGRESS"})


@dataclass
class System:
    """The service and the gateway as child processes in `workdir`; logs land there too."""

    workdir: Path
    s3_url: str
    runpod_url: str = ""
    sim_step_seconds: float = 0.15
    environment: str = "development"
    service_port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)
    _procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    _http: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def service_target(self) -> str:
        return f"127.0.0.1:{self.service_port}"

    def _env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "ENVIRONMENT": self.environment,
            "JOBSTATE_JWT_SECRET": JWT_SECRET,
            "JOBSTATE_CALLBACK_SECRET": CALLBACK_SECRET,
            "GATEWAY_PUBLIC_URL": self.url,
            "R2_ENDPOINT_URL": self.s3_url,
            "R2_ACCESS_KEY_ID": S3_KEY,
            "R2_SECRET_ACCESS_KEY": S3_KEY,
            "R2_BUCKET": BUCKET,
            "SIMWORKER_STEP_SECONDS": str(self.sim_step_seconds),
            "RUNPOD_ENDPOINT_URL": self.runpod_url,
            "GATEWAY_SIMULATED_WORKER": "1",
            "RUNPOD_API_KEY": "test-runpod-key" if self.runpod_url else "",
        }
        for name in ("JOBSTATE_LISTEN", "GATEWAY_LISTEN", "JOBSTATE_TARGET", "RUNPOD_ENDPOINT"):
            env.pop(name, None)
        return env

    async def _spawn(self, name: str, *args: str) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        try:
            self._procs[name] = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "jobstate_cli",
                *args,
                cwd=self.workdir,
                env=self._env(),
                stdout=log,
                stderr=log,
            )
        finally:
            log.close()

    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        database = f"sqlite+aiosqlite:///{self.workdir / 'jobstate.db'}"
        await self._spawn(
            "serve", "serve", "--listen", self.service_target, "--database-url", database
        )
        await self.start_gateway()

    async def start_gateway(self) -> None:
        await self._spawn(
            "gateway",
            "gateway",
            "--listen",
            f"127.0.0.1:{self.gateway_port}",
            "--jobstate-target",
            self.service_target,
        )
        await self._wait_healthy()

    async def stop_gateway(self) -> int:
        """SIGTERM: the gateway closes its sockets with 1001 and exits; returns the exit code."""
        proc = self._procs.pop("gateway")
        proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(proc.wait(), START_WITHIN)

    async def stop(self) -> None:
        for proc in self._procs.values():
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        self._procs.clear()
        if self._http is not None:
            await self._http.close()

    async def _wait_healthy(self) -> None:
        assert self._http is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_WITHIN
        while True:
            for name, proc in self._procs.items():
                if proc.returncode is not None:
                    raise AssertionError(f"{name} exited with {proc.returncode}: {self.logs()}")
            try:
                async with self._http.get(self.url + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if loop.time() > deadline:
                raise AssertionError(f"the gateway was not healthy within {START_WITHIN} s")
            await asyncio.sleep(0.05)

    @staticmethod
    def token(user_id: str) -> str:
        """A user token signed with the test secret (what an identity provider would issue)."""
        import jwt

        return jwt.encode({"sub": user_id}, JWT_SECRET.encode(), algorithm="HS256")

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.workdir.glob("*.log"))
        )

    async def callback(self, callback_url: str, body: dict[str, Any]) -> int:
        """POST one RunPod callback (the URL carries its token); the HTTP status."""
        assert self._http is not None
        async with self._http.post(callback_url, json=body) as response:
            return response.status

    async def start_export(self, user_id: str) -> str:
        """Start an overlay export for `user_id` through the gateway; the job id."""
        assert self._http is not None
        headers = {"Authorization": f"Bearer {self.token(user_id)}"}
        url = self.url + "/api/export/overlay/start"
        async with self._http.post(url, json={"clip": "a"}, headers=headers) as response:
            assert response.status == 200, await response.text()
            return (await response.json())["job_id"]

    async def fetch(self, url: str) -> tuple[int, bytes]:
        assert self._http is not None
        async with self._http.get(url) as response:
            return response.status, await response.read()
