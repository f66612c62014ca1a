"""`jobstate gateway` as a process: bad configuration, SIGTERM closing sockets with 1001."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp
from gwstack import CALLBACK_SECRET, JWT_SECRET, Stack, eventually, free_port

from jobstate.server import RunningServer


async def run(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobstate.cli",
        "gateway",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_bad_configuration_exits_non_zero_with_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBSTATE_", "GATEWAY_"))}
    process = await run(env={**env, "ENVIRONMENT": "production"})
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert err.decode().strip().splitlines() == [
        "jobstate gateway: JOBSTATE_JWT_SECRET is required when ENVIRONMENT=production"
    ]
    process = await run("--listen", "nonsense", env={**env, "ENVIRONMENT": "development"})
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2 and len(err.decode().strip().splitlines()) == 1
    assert "--listen" in err.decode()


async def test_sigterm_closes_sockets_with_1001_and_exits_0(
    service: RunningServer, http: aiohttp.ClientSession, tmp_path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "JOBSTATE_JWT_SECRET": JWT_SECRET,
        "JOBSTATE_CALLBACK_SECRET": CALLBACK_SECRET,
        "RUNPOD_ENDPOINT_URL": "",
        "SIMWORKER_STEP_SECONDS": "60",
    }
    process = await run(
        "--listen", f"127.0.0.1:{port}", "--jobstate-target", f"127.0.0.1:{service.port}", env=env
    )
    url = f"http://127.0.0.1:{port}"

    async def up() -> bool:
        try:
            async with http.get(f"{url}/healthz") as response:
                return response.status == 200
        except aiohttp.ClientConnectionError:
            return False

    await eventually(up, within=30)
    headers = {"Authorization": f"Bearer {Stack.token('u1')}"}
    async with http.post(f"{url}/api/export/overlay/start", json={}, headers=headers) as response:
        job_id = (await response.json())["job_id"]
    ws = await http.ws_connect(f"{url}/api/jobs/{job_id}/ws", params={"token": Stack.token("u1")})
    assert (await ws.receive_json())["type"] == "status"
    process.send_signal(signal.SIGTERM)
    assert (await ws.receive()).type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1001
    await asyncio.wait_for(process.wait(), 30)
    assert process.returncode == 0
