"""One multiplexed socket on 100 jobs vs 100 single-job sockets: gateway memory and CPU.

    .venv/bin/python bench/mux.py [--jobs 100] [--steps 20] [--rounds 3]

`jobstate serve` (SQLite) and `jobstate gateway` run as their own processes. Each round, for
each way of watching, starts a fresh gateway, reads its resident memory (/proc/PID/status
VmRSS) once it is idle, opens the sockets — `--jobs` sockets on `GET /api/jobs/{id}/ws`, or
one socket on `GET /api/ws` subscribed to every job — and waits for every job's first
message, and reads it again: the memory the sockets (and the jobs' shared follows, the same
for both) added. Then it reports `--steps` progress changes of every job straight to the
service and waits until every socket saw each job's last version. It prints that memory and
the gateway's CPU (/proc/PID/stat utime +
stime) per delivered message during the load, medians over `--rounds`, and the ratios
multiplexed / single (goal: memory <= 0.3x, CPU per message <= 1.0x).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import JOBSTATE, cpu_seconds, free_port, median, spawn, stop, wait_for_grpc
from fanout import JWT_SECRET, USER, bench_env, create_jobs, rss_kib, wait_http

from gateway.auth import UserAuth
from jobstate.client import JobStateClient

WAIT = 60.0


class Seen:
    """The last version each job reached on the sockets, and how many event messages came."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}
        self.messages = 0
        self.changed = asyncio.Event()

    def add(self, message: dict[str, object]) -> None:
        version = message.get("version")
        if isinstance(version, int):
            self.messages += 1
            self.versions[str(message["job_id"])] = version
            self.changed.set()

    async def reach(self, targets: dict[str, int]) -> None:
        async with asyncio.timeout(WAIT):
            while any(self.versions.get(job, 0) < v for job, v in targets.items()):
                self.changed.clear()
                await self.changed.wait()


async def read(ws: aiohttp.ClientWebSocketResponse, seen: Seen) -> None:
    async for frame in ws:
        if frame.type is aiohttp.WSMsgType.TEXT:
            seen.add(json.loads(frame.data))


async def open_single(
    http: aiohttp.ClientSession, base: str, token: str, jobs: list[str]
) -> list[aiohttp.ClientWebSocketResponse]:
    return [
        await http.ws_connect(f"{base}/api/jobs/{job}/ws", params={"token": token}) for job in jobs
    ]


async def open_mux(
    http: aiohttp.ClientSession, base: str, token: str, jobs: list[str]
) -> list[aiohttp.ClientWebSocketResponse]:
    ws = await http.ws_connect(f"{base}/api/ws", params={"token": token})
    for job in jobs:
        await ws.send_str(json.dumps({"type": "subscribe", "job_id": job}))
    return [ws]


async def one_round(
    mode: str, target: str, env: dict[str, str], jobs: list[str], steps: int, start: int
) -> tuple[float, float]:
    """(KiB the sockets added, gateway CPU µs per delivered message) for one fresh gateway."""
    port = free_port()
    gateway = spawn(
        [JOBSTATE, "gateway", "--listen", f"127.0.0.1:{port}", "--jobstate-target", target], env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"{base}/healthz")
        before = rss_kib(gateway.pid)
        token = UserAuth(JWT_SECRET).mint(USER)
        seen = Seen()
        opener = open_mux if mode == "multiplexed" else open_single
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
            JobStateClient(target, timeout=10) as client,
        ):
            sockets = await opener(http, base, token, jobs)
            readers = [asyncio.create_task(read(ws, seen)) for ws in sockets]
            await seen.reach(dict.fromkeys(jobs, 1))
            added = rss_kib(gateway.pid) - before
            targets = dict(seen.versions)
            cpu, messages = cpu_seconds([gateway.pid]), seen.messages
            for step in range(start, start + steps):
                changed = await asyncio.gather(
                    *(client.report_progress(job, step / 100) for job in jobs)
                )
                targets = {job.job_id: job.version for job in changed}
            await seen.reach(targets)
            cpu = cpu_seconds([gateway.pid]) - cpu
            delivered = seen.messages - messages
            for ws in sockets:
                await ws.close()
            await asyncio.gather(*readers)
        return added, cpu / delivered * 1e6
    finally:
        stop(gateway)


async def harness(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="mux-"))
    target = f"127.0.0.1:{free_port()}"
    env = bench_env(f"sqlite+aiosqlite:///{workdir}/bench.db")
    service: subprocess.Popen[bytes] = spawn([JOBSTATE, "serve", "--listen", target], env)
    try:
        await wait_for_grpc(target)
        jobs = await create_jobs(target, args.jobs)
        results: dict[str, list[tuple[float, float]]] = {"single": [], "multiplexed": []}
        step = 1
        for _ in range(args.rounds):
            for mode in results:
                result = await one_round(mode, target, env, jobs, args.steps, step)
                step += args.steps
                results[mode].append(result)
                print(f"{mode:>11}: +{result[0]:,.0f} KiB, {result[1]:.1f} µs CPU/msg", flush=True)
        memory = {mode: median([r[0] for r in rs]) for mode, rs in results.items()}
        cpu = {mode: median([r[1] for r in rs]) for mode, rs in results.items()}
        print(
            f"median of {args.rounds}: {args.jobs} single sockets +{memory['single']:,.0f} KiB, "
            f"{cpu['single']:.1f} µs/msg; one socket +{memory['multiplexed']:,.0f} KiB, "
            f"{cpu['multiplexed']:.1f} µs/msg"
        )
        print(
            f"ratio multiplexed / single: memory {memory['multiplexed'] / memory['single']:.2f} "
            f"(goal <= 0.3), CPU per message {cpu['multiplexed'] / cpu['single']:.2f} "
            "(goal <= 1.0)"
        )
    finally:
        stop(service)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if (args.steps * args.rounds * 2 + 1) > 10_000:
        parser.error("--steps x --rounds is too large: progress would pass 100")
    asyncio.run(harness(args))


if __name__ == "__main__":
    main()
