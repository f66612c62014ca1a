"""ReportProgress RPC/s and latency against a no-op grpc.aio server measured in the same run.

    python bench/progress_rpc.py [--backend sqlite|postgres|both] [--seconds 5] [--rounds 3]
                                 [--floor]

Each round runs the no-op server, then jobstate on each backend, as separate processes on
loopback; 64 concurrent callers spread over 1,000 jobs. Prints per-round figures and the
medians with `ratio = ours / no-op`. PostgreSQL needs JOBSTATE_TEST_POSTGRES_URL (a database
of its own is created and dropped). `--replicas 2` runs two jobstate processes on PostgreSQL
and spreads callers over both with round_robin. `--floor` also runs the layers between the
no-op server and a durable write (see `noop_server.py`): where a durable ReportProgress's
floor lies on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (
    cpu_seconds,
    free_port,
    median,
    percentile,
    spawn,
    start_replicas,
    stop,
    wait_for_grpc,
)

from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

# noop_server.py's layers above the no-op, in order: each adds one thing a durable write needs.
FLOOR_LAYERS = ("await", "hop", "sqlite", "sqlite-loop")


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU per RPC: less disturbed by a busy machine than RPC/s


async def drive(
    targets: Sequence[str], seconds: float, callers: int, jobs: int, pids: Sequence[int] = ()
) -> Result:
    target = targets[0] if len(targets) == 1 else "ipv4:" + ",".join(targets)
    options = [("grpc.lb_policy_name", "round_robin")]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = pb_grpc.JobStateServiceStub(channel)
        run = uuid.uuid4().hex[:8]
        job_ids = [f"bench-{run}-{i}" for i in range(jobs)]
        for start in range(0, jobs, 100):
            await asyncio.gather(
                *(
                    stub.CreateJob(pb.CreateJobRequest(job_id=j, user_id="bench", kind="bench"))
                    for j in job_ids[start : start + 100]
                )
            )
        counters = [0] * jobs
        latencies: list[float] = []
        end = time.perf_counter() + seconds

        async def caller(index: int) -> None:
            n = index
            while time.perf_counter() < end:
                job = n % jobs
                n += callers
                counters[job] += 1
                request = pb.ReportProgressRequest(
                    job_id=job_ids[job], progress=min(100.0, counters[job] * 0.001)
                )
                began = time.perf_counter()
                await stub.ReportProgress(request)
                latencies.append(time.perf_counter() - began)

        began, cpu = time.perf_counter(), cpu_seconds(pids)
        await asyncio.gather(*(caller(i) for i in range(callers)))
        elapsed, cpu = time.perf_counter() - began, cpu_seconds(pids) - cpu
    return Result(
        len(latencies) / elapsed,
        percentile(latencies, 0.5) * 1000,
        percentile(latencies, 0.99) * 1000,
        cpu / len(latencies) * 1e6,
    )


async def run_noop(args: argparse.Namespace, layer: str = "noop") -> Result:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        process = spawn([sys.executable, "bench/noop_server.py", str(port), layer, tmp])
        try:
            await wait_for_grpc(f"127.0.0.1:{port}")
            target = f"127.0.0.1:{port}"
            return await drive([target], args.seconds, args.callers, args.jobs, [process.pid])
        finally:
            stop(process)


async def run_jobstate(args: argparse.Namespace, database_url: str, replicas: int) -> Result:
    processes, targets = await start_replicas(database_url, replicas)
    try:
        pids = [process.pid for process in processes]
        return await drive(targets, args.seconds, args.callers, args.jobs, pids)
    finally:
        for process in processes:
            stop(process)


async def postgres_database(admin_url: str, name: str, create: bool) -> str:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        if create:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        else:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def report(label: str, results: list[Result], baseline: list[Result]) -> None:
    rps = median([r.rps for r in results])
    base = median([r.rps for r in baseline])
    cpu = median([r.cpu_us for r in results])
    base_cpu = median([r.cpu_us for r in baseline])
    print(
        f"{label:<22} {rps:8.0f} RPC/s  p50 {median([r.p50_ms for r in results]):6.1f} ms"
        f"  p99 {median([r.p99_ms for r in results]):6.1f} ms   ratio = {rps / base:.2f}"
        f"   server CPU {cpu:5.0f} us/RPC (no-op / ours = {base_cpu / cpu:.2f})"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=1, help="jobstate processes on PostgreSQL")
    parser.add_argument(
        "--floor", action="store_true", help="also the layers of noop_server.py, each a floor"
    )
    args = parser.parse_args()
    pg_admin = os.environ.get("JOBSTATE_TEST_POSTGRES_URL", "")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends and not pg_admin:
        print("skipping PostgreSQL: JOBSTATE_TEST_POSTGRES_URL is not set")
        backends.remove("postgres")
    results: dict[str, list[Result]] = {"no-op grpc.aio": []}
    for round_ in range(args.rounds):
        results["no-op grpc.aio"].append(await run_noop(args))
        for layer in FLOOR_LAYERS if args.floor else ():
            results.setdefault(f"floor: {layer}", []).append(await run_noop(args, layer))
        for backend in backends:
            if backend == "sqlite":
                with tempfile.TemporaryDirectory() as tmp:
                    url = f"sqlite+aiosqlite:///{tmp}/bench.db"
                    results.setdefault("jobstate sqlite", []).append(
                        await run_jobstate(args, url, 1)
                    )
            else:
                name = f"jobstate_bench_{uuid.uuid4().hex[:8]}"
                url = await postgres_database(pg_admin, name, create=True)
                try:
                    label = f"jobstate postgres x{args.replicas}"
                    results.setdefault(label, []).append(
                        await run_jobstate(args, url, args.replicas)
                    )
                finally:
                    await postgres_database(pg_admin, name, create=False)
        for label, rows in results.items():
            row = rows[-1]
            print(
                f"round {round_ + 1} {label:<22} {row.rps:8.0f} RPC/s  p99 {row.p99_ms:6.1f} ms"
                f"  server CPU {row.cpu_us:5.0f} us/RPC"
            )
    print(f"\nmedians of {args.rounds} rounds, {args.callers} callers over {args.jobs} jobs:")
    for label, rows in results.items():
        report(label, rows, results["no-op grpc.aio"])


if __name__ == "__main__":
    asyncio.run(main())
