"""The real system on loopback for the browser tests: `jobstate serve` and `jobstate gateway`
as subprocesses (so a test can restart the gateway mid-job) and moto's S3 server in a thread;
where a test wants to set the pace itself, the gateway submits to `support.fakerunpod`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from support.processes import GatewayProcess, ServeProcess

JWT_SECRET = "browser-tests-jwt-secret-0123456789abcdef"
CALLBACK_SECRET = "browser-tests-callback-secret-0123456789ab"
BUCKET = "browser-test-exports"
S3_KEY = "testing"


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
class System:
    """The service and the gateway as child processes in `workdir`; logs land there too."""

    workdir: Path
    s3_url: str
    runpod_url: str = ""
    sim_step_seconds: float = 0.15
    environment: str = "development"
    service: ServeProcess = field(init=False)
    gateway: GatewayProcess = field(init=False)
    _http: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        database = f"sqlite+aiosqlite:///{self.workdir / 'jobstate.db'}"
        self.service = ServeProcess(
            database_url=database,
            env=self._env(),
            cwd=self.workdir,
            log_path=self.workdir / "serve.log",
        )
        self.gateway = GatewayProcess(
            env=self._env(), cwd=self.workdir, log_path=self.workdir / "gateway.log"
        )

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def service_target(self) -> str:
        return self.service.target

    def _env(self) -> dict[str, str | None]:
        return {
            "ENVIRONMENT": self.environment,
            "JOBSTATE_JWT_SECRET": JWT_SECRET,
            "JOBSTATE_CALLBACK_SECRET": CALLBACK_SECRET,
            "R2_ENDPOINT_URL": self.s3_url,
            "R2_ACCESS_KEY_ID": S3_KEY,
            "R2_SECRET_ACCESS_KEY": S3_KEY,
            "R2_BUCKET": BUCKET,
            "SIMWORKER_STEP_SECONDS": str(self.sim_step_seconds),
            "RUNPOD_ENDPOINT_URL": self.runpod_url,
            "GATEWAY_SIMULATED_WORKER": "1",
            "RUNPOD_API_KEY": "test-runpod-key" if self.runpod_url else "",
        }

    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        await self.service.start()
        self.gateway.target = self.service.target
        await self.start_gateway()

    async def start_gateway(self) -> None:
        """Start the gateway (again: on the port it had, so callback URLs still reach it)."""
        await self.gateway.start()

    async def stop_gateway(self) -> int | None:
        """SIGTERM: the gateway closes its sockets with 1001 and exits; returns the exit code."""
        return await self.gateway.stop()

    async def stop(self) -> None:
        await self.gateway.kill()
        await self.service.kill()
        if self._http is not None:
            await self._http.close()

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
            job_id = (await response.json())["job_id"]
            assert isinstance(job_id, str), job_id
            return job_id

    async def fetch(self, url: str) -> tuple[int, bytes]:
        assert self._http is not None
        async with self._http.get(url) as response:
            return response.status, await response.read()
