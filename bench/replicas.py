"""Where two PostgreSQL replicas spend their time: ReportProgress RPC/s with 1 and 2 replicas,
calls spread per call (round_robin, as `progress_rpc.py --replicas 2`) or by job (each job's
writes always to the same replica), and the CPU each replica process used meanwhile.

    JOBSTATE_TEST_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test \\
        python bench/replicas.py [--seconds 5] [--rounds 3]

Per call spreading makes consecutive updates of one job alternate between replicas: every
update then finds its replica's cached version stale, loses the version check and is
re-applied under a row lock, and the two replicas' group-commit batches wait on each other's
row locks. By-job spreading is what a deployment gets when one job's writes come from one
place. CPU is the replica processes' user+system time over wall time (1.0 = one core).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import median, start_replicas, stop
from progress_rpc import Result, drive, postgres_database

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu: list[float]  # cores used by each replica process


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


async def run(admin_url: str, replicas: int, by_job: bool, args: argparse.Namespace) -> Row:
    name = f"jobstate_bench_{uuid.uuid4().hex[:8]}"
    url = await postgres_database(admin_url, name, create=True)
    processes, targets = await start_replicas(url, replicas)
    try:
        before = [cpu_seconds(p.pid) for p in processes]
        loop = asyncio.get_running_loop()
        began = loop.time()
        if by_job and replicas > 1:
            # Disjoint jobs and callers per replica: each job's writes go to one replica.
            parts: list[Result] = await asyncio.gather(
                *(
                    drive([t], args.seconds, args.callers // replicas, args.jobs // replicas)
                    for t in targets
                )
            )
            rps = sum(p.rps for p in parts)
            p50_ms, p99_ms = median([p.p50_ms for p in parts]), max(p.p99_ms for p in parts)
        else:
            result = await drive(targets, args.seconds, args.callers, args.jobs)
            rps, p50_ms, p99_ms = result.rps, result.p50_ms, result.p99_ms
        wall = loop.time() - began
        cpu = [(cpu_seconds(p.pid) - b) / wall for p, b in zip(processes, before, strict=True)]
        return Row(rps, p50_ms, p99_ms, cpu)
    finally:
        for process in processes:
            stop(process)
        await postgres_database(admin_url, name, create=False)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    admin_url = os.environ.get("JOBSTATE_TEST_POSTGRES_URL", "")
    if not admin_url:
        sys.exit("replicas: JOBSTATE_TEST_POSTGRES_URL is not set")
    setups = {"x1": (1, False), "x2 per call": (2, False), "x2 by job": (2, True)}
    rows: dict[str, list[Row]] = {label: [] for label in setups}
    for round_ in range(args.rounds):
        for label, (replicas, by_job) in setups.items():
            row = await run(admin_url, replicas, by_job, args)
            rows[label].append(row)
            cpu = " + ".join(f"{c:.2f}" for c in row.cpu)
            print(
                f"round {round_ + 1} {label:<12} {row.rps:7.0f} RPC/s  p50 {row.p50_ms:7.1f} ms"
                f"  p99 {row.p99_ms:7.1f} ms  replica CPU {cpu} cores"
            )
    print(f"\nmedians of {args.rounds} rounds, {args.callers} callers over {args.jobs} jobs:")
    for label, results in rows.items():
        cores = median([sum(r.cpu) for r in results])
        print(
            f"{label:<12} {median([r.rps for r in results]):7.0f} RPC/s"
            f"  p50 {median([r.p50_ms for r in results]):7.1f} ms"
            f"  p99 {median([r.p99_ms for r in results]):7.1f} ms"
            f"  replica CPU {cores:.2f} cores in all"
        )


if __name__ == "__main__":
    asyncio.run(main())
