"""`jobstate dev`: service + gateway + simulated worker in one process, under ./data."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
from support.poll import eventually
from support.ports import server_port


async def start_dev(cwd: Path, port: int) -> tuple[asyncio.subprocess.Process, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBSTATE_", "GATEWAY_"))}
    env.pop("ENVIRONMENT", None)
    env.update(
        JOBSTATE_LISTEN="127.0.0.1:0",
        GATEWAY_LISTEN=f"127.0.0.1:{port}",
        SIMWORKER_STEP_SECONDS="0.02",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobstate_cli",
        "dev",
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        assert line, "jobstate dev exited before printing the demo URL"
        if "open http" in line:
            return process, line.split("open ", 1)[1].split()[0].rstrip("/")


async def stop(process: asyncio.subprocess.Process) -> int | None:
    process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), 30)


async def test_dev_runs_everything_and_keeps_tokens_across_restarts(tmp_path: Path) -> None:
    port = server_port()  # both starts listen on it
    process, url = await start_dev(tmp_path, port)
    assert url == f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/api/dev/token", params={"user_id": "dev"}) as response:
                token = (await response.json())["token"]
            headers = {"Authorization": f"Bearer {token}"}
            start = f"{url}/api/export/overlay/start"
            async with http.post(start, json={"clip": "x"}, headers=headers) as response:
                assert response.status == 200
                job_id = (await response.json())["job_id"]

            async def complete() -> bool:
                async with http.get(f"{url}/api/jobs/{job_id}", headers=headers) as response:
                    return bool((await response.json())["status"] == "complete")

            await eventually(complete, f"the simulated worker to complete {job_id}")
            async with http.get(url + "/") as response:
                assert response.status == 200
    finally:
        assert await stop(process) == 0
    assert {p.name for p in (tmp_path / "data").iterdir()} >= {
        "jobstate.db",
        "jwt_secret",
        "callback_secret",
    }

    process, url = await start_dev(tmp_path, port)
    try:
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{url}/api/jobs/{job_id}", headers=headers) as response:
                assert response.status == 200  # same secret, same database
                assert (await response.json())["status"] == "complete"
    finally:
        assert await stop(process) == 0
