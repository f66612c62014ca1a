"""Cross-replica notification latency: a write acknowledged on replica 2 → the event on a
WatchJob stream of replica 1 (PostgreSQL NOTIFY → LISTEN relay → history read → hub).

    JOBSTATE_TEST_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test \\
        python bench/notify_latency.py [--events 300] [--load 0] [--rounds 3]

Two `jobstate serve` processes on a database of their own (created and dropped). One job is
watched on both replicas; each ReportProgress goes to replica 2 and, once acknowledged, the
clock runs until the watcher on replica 1 (cross-replica) and the one on replica 2 (same
replica, for reference) have the event; the next write waits for both, so no backlog forms.
`--load N` adds N callers writing progress to other jobs through both replicas meanwhile.
A latency can be negative: the NOTIFY fires at commit, before the acknowledgement has
travelled back to the writer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import median, percentile, start_replicas, stop
from progress_rpc import postgres_database

from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc


class Watcher:
    """A WatchJob stream that records when each version arrived."""

    def __init__(self, stub: pb_grpc.JobStateServiceAsyncStub, job_id: str) -> None:
        self.arrived: dict[int, float] = {}
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._call = stub.WatchJob(pb.WatchJobRequest(job_id=job_id))
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            async for item in self._call:
                now = time.perf_counter()
                self.arrived[item.job.version] = now
                for version in [v for v in self._waiters if v <= item.job.version]:
                    self._waiters.pop(version).set_result(None)

    async def wait(self, version: int, within: float = 30.0) -> float:
        if version not in self.arrived:
            future = asyncio.get_running_loop().create_future()
            self._waiters[version] = future
            await asyncio.wait_for(future, within)
        return self.arrived[version]

    async def close(self) -> None:
        self._call.cancel()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def background(
    stubs: list[pb_grpc.JobStateServiceAsyncStub], callers: int, stop_at: asyncio.Event
) -> int:
    """`callers` writers on their own jobs, alternating replicas, until `stop_at` is set."""
    run = uuid.uuid4().hex[:6]
    jobs = [f"load-{run}-{i}" for i in range(max(callers * 4, 1))]
    for index, job_id in enumerate(jobs):
        await stubs[index % 2].CreateJob(pb.CreateJobRequest(job_id=job_id, user_id="b", kind="b"))
    done = 0

    async def caller(index: int) -> None:
        nonlocal done
        n = 0
        while not stop_at.is_set():
            n += 1
            job_id = jobs[(index + n * callers) % len(jobs)]
            request = pb.ReportProgressRequest(job_id=job_id, progress=min(100.0, n * 0.01))
            with contextlib.suppress(grpc.aio.AioRpcError):
                await stubs[(index + n) % 2].ReportProgress(request, timeout=30)
            done += 1

    await asyncio.gather(*(caller(i) for i in range(callers)))
    return done


async def measure(
    targets: list[str], events: int, load: int
) -> tuple[list[float], list[float], float]:
    channels = [grpc.aio.insecure_channel(t) for t in targets]
    stubs = [pb_grpc.JobStateServiceStub(c) for c in channels]
    job_id = f"latency-{uuid.uuid4().hex[:8]}"
    await stubs[1].CreateJob(pb.CreateJobRequest(job_id=job_id, user_id="b", kind="b"))
    far, near = Watcher(stubs[0], job_id), Watcher(stubs[1], job_id)
    await far.wait(1)
    await near.wait(1)
    stop_load = asyncio.Event()
    loader = asyncio.create_task(background(stubs, load, stop_load)) if load else None
    cross, same = [], []
    began = time.perf_counter()
    try:
        for i in range(events):
            request = pb.ReportProgressRequest(
                job_id=job_id, progress=min(100.0, i * 0.1), message=f"event {i}"
            )
            version = (await stubs[1].ReportProgress(request, timeout=30)).job.version
            acked = time.perf_counter()
            cross.append(await far.wait(version) - acked)
            same.append(await near.wait(version) - acked)
    finally:
        elapsed = time.perf_counter() - began
        stop_load.set()
        load_rps = (await loader) / elapsed if loader else 0.0
        await far.close()
        await near.close()
        for channel in channels:
            await channel.close()
    return cross, same, load_rps


async def one_round(
    admin_url: str, events: int, load: int
) -> tuple[list[float], list[float], float]:
    name = f"jobstate_bench_{uuid.uuid4().hex[:8]}"
    url = await postgres_database(admin_url, name, create=True)
    processes, targets = await start_replicas(url, 2)
    try:
        return await measure(targets, events, load)
    finally:
        for process in processes:
            stop(process)
        await postgres_database(admin_url, name, create=False)


def summary(label: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"{label:<28} p50 {percentile(ms, 0.5):7.2f} ms  p99 {percentile(ms, 0.99):7.2f} ms"
        f"  max {max(ms):7.2f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--load", type=int, default=0, help="background writers on other jobs")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    admin_url = os.environ.get("JOBSTATE_TEST_POSTGRES_URL", "")
    if not admin_url:
        sys.exit("notify_latency: JOBSTATE_TEST_POSTGRES_URL is not set")
    rounds: list[tuple[list[float], list[float], float]] = []
    for round_ in range(args.rounds):
        cross, same, load_rps = await one_round(admin_url, args.events, args.load)
        rounds.append((cross, same, load_rps))
        print(f"round {round_ + 1}: " + summary("replica 2 -> watcher on 1", cross).strip())
        print("         " + summary("replica 2 -> watcher on 2", same).strip())
        if args.load:
            print(f"         background load {load_rps:.0f} RPC/s")
    print(f"\nmedians of {args.rounds} rounds, {args.events} events each, load={args.load}:")
    for label, samples in (
        ("cross-replica (2 -> 1)", [cross for cross, _, _ in rounds]),
        ("same replica (2 -> 2)", [same for _, same, _ in rounds]),
    ):
        p50 = median([percentile(s, 0.5) * 1000 for s in samples])
        p99 = median([percentile(s, 0.99) * 1000 for s in samples])
        print(f"{label:<28} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms")
    if args.load:
        print(f"background load               {median([r[2] for r in rounds]):7.0f} RPC/s")


if __name__ == "__main__":
    asyncio.run(main())
