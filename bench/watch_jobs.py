"""WatchJobs vs WatchJob: one user's 100 active jobs followed on one stream, or on 100.

    .venv/bin/python bench/watch_jobs.py [--jobs 100] [--rate 500] [--seconds 8] [--runs 3]

Each run starts a fresh `jobstate serve` on SQLite, creates `--jobs` processing jobs of one
user, opens the watchers in this process through `jobstate.client` — either one
`watch_jobs(user)` or one `watch(job)` per job — waits until each has its initial state, then
starts a load generator (a process of its own) that reports progress at a steady `--rate`
spread evenly over the jobs for `--seconds`. Each change carries its send time in its message
(CLOCK_MONOTONIC is system-wide), so the latency measured is call → delivery to the watcher:
commit, publish, stream and decode included. The rate per job stays far below what makes the
hub coalesce, so every event is delivered.

Runs alternate between the two kinds (A, B, A, B, ...) so drift of a busy machine spreads over
both; it prints p50/p99 of each run, the median p99 of each kind and `ratio = WatchJobs p99 /
WatchJob p99` (the goal: at most 2).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import JOBSTATE, free_port, percentile, spawn, stop, wait_for_grpc

from jobstate.client import EventType, JobEvent, JobStateClient

USER = "bench"


def job_ids(count: int) -> list[str]:
    return [f"job-{index:04d}" for index in range(count)]


async def run_load(target: str, jobs: int, rate: float, seconds: float) -> None:
    """Progress at a steady rate over every job; each message is its send time (ns)."""
    ids = job_ids(jobs)
    total = int(rate * seconds)
    per_job = total // jobs + 1
    async with JobStateClient(target, timeout=30) as client:
        await client.get_job(ids[0])  # connected before the clock starts
        pending: set[asyncio.Task[object]] = set()
        start = time.monotonic()
        for index in range(total):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            job = ids[index % jobs]
            value = 1 + 98 * (index // jobs) / per_job
            call = client.report_progress(job, value, str(time.monotonic_ns()))
            task = asyncio.create_task(call)
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)


class Sink:
    """Latencies (ms) of delivered changes; `all_in` is set once `expected` arrived."""

    def __init__(self, expected: int) -> None:
        self.latencies: list[float] = []
        self.expected = expected
        self.all_in = asyncio.Event()

    def add(self, sent_ns: int) -> None:
        self.latencies.append((time.monotonic_ns() - sent_ns) / 1e6)
        if len(self.latencies) >= self.expected:
            self.all_in.set()


async def follow(items: AsyncIterator[object], sink: Sink, ready: asyncio.Event) -> None:
    async for item in items:
        if not isinstance(item, JobEvent) or item.type is EventType.SNAPSHOT:
            ready.set()  # the initial state (InitialStateComplete, or a WatchJob's SNAPSHOT)
        elif item.job.message.isdigit():
            sink.add(int(item.job.message))


async def one_run(kind: str, args: argparse.Namespace) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, events delivered) of one run of `kind` ("WatchJobs" or "WatchJob")."""
    with tempfile.TemporaryDirectory() as directory:
        target = f"127.0.0.1:{free_port()}"
        server = spawn(
            [JOBSTATE, "serve", "--listen", target, "--database-url",
             f"sqlite+aiosqlite:///{directory}/bench.db"],
            {"ENVIRONMENT": "development", "JOBSTATE_LOG_LEVEL": "WARNING"},
        )  # fmt: skip
        try:
            await wait_for_grpc(target)
            async with JobStateClient(target, timeout=30) as client:
                for job_id in job_ids(args.jobs):
                    await client.create_job(USER, "bench", job_id=job_id)
                    await client.report_progress(job_id, 1)
                sink = Sink(int(args.rate * args.seconds))
                readies: list[asyncio.Event] = []
                iterators = (
                    [client.watch_jobs(USER)]
                    if kind == "WatchJobs"
                    else [client.watch(job_id) for job_id in job_ids(args.jobs)]
                )
                tasks = []
                for items in iterators:
                    readies.append(asyncio.Event())
                    tasks.append(asyncio.create_task(follow(items, sink, readies[-1])))
                await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
                load = spawn(
                    [sys.executable, __file__, "--load", target, "--jobs", str(args.jobs),
                     "--rate", str(args.rate), "--seconds", str(args.seconds)]
                )  # fmt: skip
                await asyncio.to_thread(load.wait)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sink.all_in.wait(), 30)
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                for items in iterators:
                    await items.aclose()
        finally:
            stop(server)
    latencies = sink.latencies
    return percentile(latencies, 0.5), percentile(latencies, 0.99), len(latencies)


async def harness(args: argparse.Namespace) -> None:
    runs: dict[str, list[tuple[float, float]]] = {"WatchJobs": [], "WatchJob": []}
    print(f"{args.jobs} jobs of one user, {args.rate:g} progress/s for {args.seconds:g} s")
    for run in range(args.runs):
        for kind, measured in runs.items():
            p50, p99, delivered = await one_run(kind, args)
            measured.append((p50, p99))
            print(f"run {run + 1} {kind:9}: {delivered} events, p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    medians = {
        kind: tuple(statistics.median(values) for values in zip(*measured, strict=True))
        for kind, measured in runs.items()
    }
    for kind, (p50, p99) in medians.items():
        print(f"median {kind:9}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    ratio = medians["WatchJobs"][1] / medians["WatchJob"][1]
    print(f"ratio = WatchJobs p99 / WatchJob p99 = {ratio:.2f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--load", metavar="TARGET", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load:
        asyncio.run(run_load(args.load, args.jobs, args.rate, args.seconds))
    else:
        asyncio.run(harness(args))


if __name__ == "__main__":
    main()
