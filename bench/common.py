"""Helpers shared by the benchmarks: free ports, subprocess servers, percentiles."""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
# JOBSTATE_BENCH_BIN measures another build (e.g. an older commit installed in a venv of its
# own) with this checkout's load generator and baseline.
JOBSTATE = os.environ.get("JOBSTATE_BENCH_BIN") or str(Path(sys.executable).with_name("jobstate"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU the processes used so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spawn(args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        list(args),
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_for_grpc(target: str, deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    async with grpc.aio.insecure_channel(target) as channel:
        while True:
            try:
                await asyncio.wait_for(channel.channel_ready(), timeout=1.0)
                return
            except TimeoutError:
                if time.monotonic() > end:
                    raise RuntimeError(f"{target} did not come up") from None


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def start_replicas(
    database_url: str, count: int
) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    """`count` `jobstate serve` processes on one database, serving; their processes and
    targets. If one does not come up, every one started is stopped before raising."""
    ports = [free_port() for _ in range(count)]
    processes = [
        spawn(
            [JOBSTATE, "serve", "--listen", f"127.0.0.1:{port}", "--database-url", database_url],
            {"ENVIRONMENT": "development", "JOBSTATE_LOG_LEVEL": "WARNING"},
        )
        for port in ports
    ]
    targets = [f"127.0.0.1:{port}" for port in ports]
    try:
        for target in targets:
            await wait_for_grpc(target)
    except BaseException:
        for process in processes:
            stop(process)
        raise
    return processes, targets
