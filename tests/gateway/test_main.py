"""`jobstate gateway` as a process: bad configuration, SIGTERM closing sockets with 1001."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import aiohttp
from gwstack import CALLBACK_SECRET, JWT_SECRET, Stack
from support.processes import GatewayProcess

from jobstate.server import RunningServer


async def outcome(*args: str, env: dict[str, str]) -> tuple[int | None, list[str]]:
    """The exit code and output lines of a gateway that should stop at start; the environment
    is `env` alone (ENVIRONMENT too: production unless it says otherwise)."""
    process = GatewayProcess(args=args, env={"ENVIRONMENT": None, **env}, listen=False)
    process.launch()
    try:
        code = await process.wait(60)
    except AssertionError:
        await process.kill()
        return None, ["still running after 60 s"]
    return code, [line for line in process.output if line.strip()]


STRONG = {"JOBSTATE_JWT_SECRET": JWT_SECRET, "JOBSTATE_CALLBACK_SECRET": CALLBACK_SECRET}
SIMULATED = {**STRONG, "GATEWAY_SIMULATED_WORKER": "1"}


async def test_bad_configuration_exits_2_with_one_line_naming_what_was_used() -> None:
    cases = {
        "no secret": ((), {"ENVIRONMENT": "production"}),
        "bad --listen": (("--listen", "nonsense"), {"ENVIRONMENT": "development"}),
        "bad GATEWAY_LISTEN": ((), {"ENVIRONMENT": "development", "GATEWAY_LISTEN": "nonsense"}),
        "weak secret": ((), {**STRONG, "JOBSTATE_CALLBACK_SECRET": "short"}),
        "no worker": ((), STRONG),
        "bad target": ((), {**SIMULATED, "JOBSTATE_TARGET": "::::"}),
        "bad --jobstate-target": (("--jobstate-target", "::::"), SIMULATED),
        "bad log level": ((), {**SIMULATED, "JOBSTATE_LOG_LEVEL": "loud"}),
        "prefix leaving the bucket's folder": ((), {**SIMULATED, "R2_OUTPUT_PREFIX": "../x/"}),
    }
    results = await asyncio.gather(*(outcome(*args, env=env) for args, env in cases.values()))
    prefix = "jobstate gateway: "
    target = (
        " must be host:port, ipv4:address[:port][,...], ipv6:address or [address]:port[,...], "
        "dns:[//authority/]host[:port] or unix:path, got '::::'"
    )
    assert dict(zip(cases, results, strict=True)) == {
        "no secret": (2, [prefix + "JOBSTATE_JWT_SECRET is required in production"]),
        "bad --listen": (2, [prefix + "--listen must be host:port, got 'nonsense'"]),
        "bad GATEWAY_LISTEN": (2, [prefix + "GATEWAY_LISTEN must be host:port, got 'nonsense'"]),
        "weak secret": (
            2,
            [prefix + "JOBSTATE_CALLBACK_SECRET must be at least 32 bytes in production, got 5"],
        ),
        "no worker": (
            2,
            [
                prefix + "RUNPOD_ENDPOINT_URL is required in production; "
                "set GATEWAY_SIMULATED_WORKER=1 to run the simulated worker instead"
            ],
        ),
        "bad target": (2, [prefix + "JOBSTATE_TARGET" + target]),
        "bad --jobstate-target": (2, [prefix + "--jobstate-target" + target]),
        "bad log level": (
            2,
            [prefix + "JOBSTATE_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got 'LOUD'"],
        ),
        "prefix leaving the bucket's folder": (
            2,
            [prefix + "R2_OUTPUT_PREFIX has an empty, '.' or '..' path segment, got '../x/'"],
        ),
    }


async def test_a_taken_port_exits_1_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, lines = await outcome("--listen", f"127.0.0.1:{port}", env=SIMULATED)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"jobstate gateway: cannot listen on 127.0.0.1:{port}: ")


async def test_sigterm_closes_sockets_with_1001_and_exits_0(
    service: RunningServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    env = {
        "ENVIRONMENT": "production",
        "JOBSTATE_JWT_SECRET": JWT_SECRET,
        "JOBSTATE_CALLBACK_SECRET": CALLBACK_SECRET,
        "RUNPOD_ENDPOINT_URL": "",
        "GATEWAY_SIMULATED_WORKER": "1",
        "SIMWORKER_STEP_SECONDS": "60",
    }
    process = GatewayProcess(target=f"127.0.0.1:{service.port}", env=env)
    await process.start()
    try:
        url = process.url
        headers = {"Authorization": f"Bearer {Stack.token('u1')}"}
        async with http.post(
            f"{url}/api/export/overlay/start", json={}, headers=headers
        ) as response:
            job_id = (await response.json())["job_id"]
        ws = await http.ws_connect(
            f"{url}/api/jobs/{job_id}/ws", params={"token": Stack.token("u1")}
        )
        assert (await ws.receive_json())["type"] == "status"
        process.send_signal(signal.SIGTERM)
        assert (await ws.receive()).type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1001
        assert await process.wait() == 0
    finally:
        await process.kill()
