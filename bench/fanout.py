"""Fan-out: callbacks in, WebSocket messages out, through the whole jobstate path.

    .venv/bin/python bench/fanout.py [--jobs 100] [--sockets 10] [--rate 1000] [--seconds 8]

J jobs x W sockets each. A separate load-generator process posts progress callbacks at a
steady rate spread over the jobs; each callback carries its send time (CLOCK_MONOTONIC is
system-wide, so processes can compare it). Measured twice in the same run:

- ours:  HTTP callback -> gateway -> gRPC -> store -> WatchJob -> gateway -> WebSocket
         (`jobstate serve` on SQLite and `jobstate gateway`, each its own process)
- relay: one aiohttp process whose POST handler broadcasts the body to that job's sockets
         (no gRPC, no store): the floor any gateway design sits on.

`--replicas 2` runs two `jobstate serve` processes on one PostgreSQL database instead (a
database of its own on JOBSTATE_TEST_POSTGRES_URL, created and dropped) and points the gateway
at both (`ipv4:a,b`, round_robin): callbacks and watch streams then cross replicas through
LISTEN/NOTIFY.

Prints delivered messages/s and callback-to-socket latency p50/p99 for both, `ratio = ours /
relay`, and the resident memory per idle socket of the gateway (and of the relay) with
--idle sockets open (default 5,000).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import JOBSTATE, free_port, percentile, spawn, stop, wait_for_grpc
from progress_rpc import postgres_database

from gateway.auth import CallbackAuth, UserAuth
from jobstate.client import JobStateClient

JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123456789"
CALLBACK_SECRET = "bench-callback-secret-0123456789abcdef01"
USER = "bench"


def bench_env(database_url: str) -> dict[str, str]:
    """The environment of the bench's jobstate processes (production rules, quiet logs)."""
    return {
        "ENVIRONMENT": "production",
        "JOBSTATE_LOG_LEVEL": "WARNING",
        "JOBSTATE_JWT_SECRET": JWT_SECRET,
        "JOBSTATE_CALLBACK_SECRET": CALLBACK_SECRET,
        "GATEWAY_SIMULATED_WORKER": "1",
        "JOBSTATE_DATABASE_URL": database_url,
        # One bench user opens every socket and job: lift the per-user abuse limits.
        "GATEWAY_MAX_SOCKETS_PER_USER": "1000000",
        "GATEWAY_MAX_UNFINISHED_JOBS_PER_USER": "1000000",
        "GATEWAY_MAX_STARTS_PER_MINUTE": "1000000",
    }


# --- the minimal relay (runs as its own process) --------------------------------------------


def run_relay(port: int) -> None:
    from aiohttp import web

    sockets: dict[str, set[web.WebSocketResponse]] = {}

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, heartbeat=30)
        await ws.prepare(request)
        job = request.match_info["job"]
        sockets.setdefault(job, set()).add(ws)
        await ws.send_str('{"type":"hello"}')
        try:
            async for _ in ws:
                pass
        finally:
            sockets[job].discard(ws)
        return ws

    async def post_handler(request: web.Request) -> web.Response:
        body = await request.text()
        for ws in list(sockets.get(request.match_info["job"], ())):
            await ws.send_str(body)
        return web.json_response({"ok": True})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/ws/{job}", ws_handler)
    app.router.add_post("/do/{job}", post_handler)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --- the load generator (runs as its own process) --------------------------------------------


async def run_loadgen(urls: list[str], rate: float, seconds: float) -> None:
    connector = aiohttp.TCPConnector(limit=256)
    sent = failed = late = 0
    rtts: list[float] = []
    progress = [0] * len(urls)
    pending: set[asyncio.Task[None]] = set()

    async with aiohttp.ClientSession(connector=connector) as http:

        async def post(index: int) -> None:
            nonlocal failed
            progress[index] += 1
            body = {
                "status": "progress",
                "progress": progress[index] / 1000,
                "message": f"t={time.monotonic():.6f}",
            }
            began = time.monotonic()
            try:
                async with http.post(urls[index], json=body) as response:
                    if response.status != 200:
                        failed += 1
            except aiohttp.ClientError:
                failed += 1
            rtts.append(time.monotonic() - began)

        total = int(rate * seconds)
        start = time.monotonic()
        for i in range(total):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(pending) >= 1024:  # open loop, but bounded: count what we could not send
                late += 1
                continue
            task = asyncio.create_task(post(i % len(urls)))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        await asyncio.gather(*pending)
    rtts = rtts or [float("nan")]
    p50, p99 = percentile(rtts, 0.5) * 1000, percentile(rtts, 0.99) * 1000
    print(json.dumps({"sent": sent, "failed": failed, "skipped": late, "rtt": [p50, p99]}))


# --- the harness ----------------------------------------------------------------------------


@dataclass
class Receiver:
    """Every socket of one run; latencies of progress messages sent in the window."""

    window: tuple[float, float] = (0.0, 0.0)
    latencies: list[float] = field(default_factory=list)
    delivered: int = 0
    expected: int = 0
    all_arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def on_message(self, data: str, now: float) -> None:
        marker = data.find('"t=')
        if marker < 0:
            return
        sent = float(data[marker + 3 : data.index('"', marker + 3)])
        if self.window[0] <= sent <= self.window[1]:
            self.delivered += 1
            self.latencies.append(now - sent)
            if self.delivered >= self.expected:
                self.all_arrived.set()


async def pump(ws: aiohttp.ClientWebSocketResponse, receiver: Receiver) -> None:
    async for message in ws:
        if message.type is aiohttp.WSMsgType.TEXT:
            receiver.on_message(message.data, time.monotonic())


async def open_sockets(
    http: aiohttp.ClientSession, urls: Sequence[str], receiver: Receiver | None
) -> list[tuple[aiohttp.ClientWebSocketResponse, asyncio.Task[None] | None]]:
    opened: list[tuple[aiohttp.ClientWebSocketResponse, asyncio.Task[None] | None]] = []
    for chunk_start in range(0, len(urls), 200):
        chunk = urls[chunk_start : chunk_start + 200]
        sockets = await asyncio.gather(*(http.ws_connect(url) for url in chunk))
        await asyncio.gather(*(ws.receive() for ws in sockets))  # the first message: connected
        for ws in sockets:
            task = asyncio.create_task(pump(ws, receiver)) if receiver else None
            opened.append((ws, task))
    return opened


async def close_sockets(
    opened: list[tuple[aiohttp.ClientWebSocketResponse, asyncio.Task[None] | None]],
) -> None:
    await asyncio.gather(*(ws.close() for ws, _ in opened), return_exceptions=True)
    await asyncio.gather(*(t for _, t in opened if t is not None), return_exceptions=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def measure(
    name: str,
    socket_urls: list[str],
    callback_urls: list[str],
    args: argparse.Namespace,
    pids: dict[str, int],
) -> dict[str, float]:
    receiver = Receiver()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        opened = await open_sockets(http, socket_urls, receiver)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(callback_urls, f)
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        start = time.monotonic()
        warmup = min(2.0, args.seconds / 4)
        receiver.window = (start + warmup, start + args.seconds)
        receiver.expected = int(args.rate * (args.seconds - warmup)) * args.sockets
        loadgen = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--loadgen",
            f.name,
            "--rate",
            str(args.rate),
            "--seconds",
            str(args.seconds),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await loadgen.communicate()
        os.unlink(f.name)
        # Let the last messages arrive (bounded), then stop counting.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receiver.all_arrived.wait(), 3)
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        await close_sockets(opened)
    counts = json.loads(out)
    lat = receiver.latencies or [float("nan")]
    result = {
        "msgs_per_s": receiver.delivered / (args.seconds - warmup),
        "p50_ms": percentile(lat, 0.50) * 1000,
        "p99_ms": percentile(lat, 0.99) * 1000,
        "callbacks_failed": counts["failed"],
        "callbacks_skipped": counts["skipped"],
    }
    print(
        f"{name:6} delivered {result['msgs_per_s']:9.0f} msg/s   latency p50 "
        f"{result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms   "
        f"(callbacks: round trip p50 {counts['rtt'][0]:.1f} ms p99 {counts['rtt'][1]:.1f} ms, "
        f"failed {counts['failed']}, not sent {counts['skipped']})",
        flush=True,
    )
    per_callback = {n: 1e6 * c / max(1, counts["sent"]) for n, c in cpu.items()}
    print(
        "       server CPU per callback: "
        + ", ".join(f"{n} {us:.0f} us" for n, us in per_callback.items()),
        flush=True,
    )
    return result


async def idle_memory(pid: int, socket_urls: list[str]) -> float:
    """KiB of resident memory per idle socket (after its first message)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await asyncio.sleep(0.5)
        before = rss_kib(pid)
        opened = await open_sockets(http, socket_urls, None)
        await asyncio.sleep(1.0)
        after = rss_kib(pid)
        await close_sockets(opened)
    return (after - before) / len(socket_urls)


async def create_jobs(target: str, count: int) -> list[str]:
    async with JobStateClient(target, timeout=10) as client:
        ids = []
        for i in range(count):
            job = await client.create_job(USER, "bench")
            await client.mark_submitted(job.job_id, f"x{i}")
            ids.append(job.job_id)
        return ids


async def harness(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="fanout-"))
    grpc_ports = [free_port() for _ in range(args.replicas)]
    gw_port, relay_port = free_port(), free_port()
    admin_url, pg_name = os.environ.get("JOBSTATE_TEST_POSTGRES_URL", ""), ""
    database_url = f"sqlite+aiosqlite:///{workdir}/bench.db"
    if args.replicas > 1:
        if not admin_url:
            sys.exit("fanout: --replicas needs JOBSTATE_TEST_POSTGRES_URL (PostgreSQL)")
        pg_name = f"jobstate_bench_{uuid.uuid4().hex[:8]}"
        database_url = await postgres_database(admin_url, pg_name, create=True)
    targets = [f"127.0.0.1:{port}" for port in grpc_ports]
    target = targets[0] if len(targets) == 1 else "ipv4:" + ",".join(targets)
    env = bench_env(database_url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        services = [spawn([JOBSTATE, "serve", "--listen", t], env) for t in targets]
        procs += services
        for t in targets:
            await wait_for_grpc(t)
        profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
        gateway = spawn(
            [
                sys.executable,
                *profile,
                "-m",
                "jobstate_cli",
                "gateway",
                "--listen",
                f"127.0.0.1:{gw_port}",
                "--jobstate-target",
                target,
            ],
            env,
        )
        relay = spawn([sys.executable, __file__, "--relay", str(relay_port)])
        procs += [gateway, relay]
        await wait_http(f"http://127.0.0.1:{gw_port}/healthz")
        await wait_http(f"http://127.0.0.1:{relay_port}/healthz")
        jobs = await create_jobs(target, args.jobs)
        token = UserAuth(JWT_SECRET).mint(USER)
        cb = CallbackAuth(CALLBACK_SECRET)
        gw, rl = f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{relay_port}"
        ours_ws = [f"{gw.replace('http', 'ws')}/api/jobs/{j}/ws?token={token}" for j in jobs]
        relay_ws = [f"{rl.replace('http', 'ws')}/ws/{j}" for j in jobs]
        ours_cb = [f"{gw}/api/jobs/{j}/do?token={cb.token(j)}" for j in jobs]
        relay_cb = [f"{rl}/do/{j}" for j in jobs]
        if args.idle:  # first, on fresh processes: after traffic, freed heap hides the cost
            per_gw = await idle_memory(
                gateway.pid, [ours_ws[i % len(jobs)] for i in range(args.idle)]
            )
            per_relay = await idle_memory(
                relay.pid, [relay_ws[i % len(jobs)] for i in range(args.idle)]
            )
            print(
                f"idle sockets: {args.idle} open; resident memory per socket: gateway "
                f"{per_gw:.1f} KiB, relay (bare aiohttp) {per_relay:.1f} KiB (goal <= 20 KiB)"
            )
        for rate in args.rates:
            args.rate = rate
            # Fresh jobs each round: progress never moves backwards, so old jobs would ignore it.
            jobs = await create_jobs(target, args.jobs)
            ours_ws = [f"{gw.replace('http', 'ws')}/api/jobs/{j}/ws?token={token}" for j in jobs]
            relay_ws = [f"{rl.replace('http', 'ws')}/ws/{j}" for j in jobs]
            ours_cb = [f"{gw}/api/jobs/{j}/do?token={cb.token(j)}" for j in jobs]
            relay_cb = [f"{rl}/do/{j}" for j in jobs]
            print(
                f"{args.jobs} jobs x {args.sockets} sockets, {rate:.0f} callbacks/s for "
                f"{args.seconds:.0f} s each (warm-up excluded), load generator in its own process"
            )
            base = await measure(
                "relay", relay_ws * args.sockets, relay_cb, args, {"relay": relay.pid}
            )
            ours = await measure(
                "ours",
                ours_ws * args.sockets,
                ours_cb,
                args,
                {
                    "gateway": gateway.pid,
                    **{
                        f"service{i + 1}" if len(services) > 1 else "service": p.pid
                        for i, p in enumerate(services)
                    },
                },
            )
            print(
                f"ratio = ours / relay: delivered {ours['msgs_per_s'] / base['msgs_per_s']:.2f}, "
                f"p99 {ours['p99_ms']:.1f} ms vs {base['p99_ms']:.1f} ms "
                f"(goals: ratio >= 0.8 at 1000/s, p99 < 50 ms at 500/s)",
                flush=True,
            )
    finally:
        for process in reversed(procs):
            stop(process)
        if pg_name:
            await postgres_database(admin_url, pg_name, create=False)


async def wait_http(url: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > end:
                raise RuntimeError(f"{url} did not come up")
            await asyncio.sleep(0.1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--sockets", type=int, default=10, help="sockets per job")
    parser.add_argument("--rate", type=float, default=1000.0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--rates",
        type=lambda v: [float(x) for x in v.split(",") if x],
        default=[1000.0, 500.0],
        help="callbacks per second, comma-separated (default 1000,500: the rates the goals name; "
        "'' measures memory only)",
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="per system and rate")
    parser.add_argument("--idle", type=int, default=5000, help="idle sockets (0: skip)")
    parser.add_argument(
        "--replicas", type=int, default=1, help="jobstate processes (2+: on PostgreSQL)"
    )
    parser.add_argument("--relay", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--profile", help="write a cProfile of the gateway to this file")
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.relay:
        run_relay(args.relay)
    elif args.loadgen:
        urls = json.loads(Path(args.loadgen).read_text())
        asyncio.run(run_loadgen(urls, args.rate, args.seconds))
    else:
        asyncio.run(harness(args))


if __name__ == "__main__":
    main()
