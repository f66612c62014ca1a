"""The raw baseline: a grpc.aio server whose ReportProgress does nothing — and the floors above it.

Same service definition, same server options, same event loop (JOBSTATE_EVENT_LOOP, uvloop by
default), no jobstate code: what grpc.aio itself costs, then what each layer a durable write
needs adds to it (`progress_rpc.py --floor` runs them all):

- `noop`: answers at once.
- `await`: the handler waits for a future that a batching task resolves (group commit with
  nothing to commit): what suspending the handler costs.
- `hop`: + that task hands each batch to one writer thread and back (`run_in_executor` of a
  function that does nothing): what the thread hop costs.
- `sqlite`: + the thread writes the batch to SQLite (WAL, synchronous=NORMAL, one transaction:
  a version-bumping UPDATE per job and an event INSERT, raw `sqlite3` `executemany`): the floor
  of a durable write answered after its commit, as jobstate's SQLite store does it.
- `sqlite-loop`: the same write on the event loop thread, no hop.

Usage: python bench/noop_server.py PORT [LAYER [DIRECTORY]] (the sqlite layers write their file in
DIRECTORY, which the caller removes: a terminated server cleans up nothing)
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc

from jobstate.loop import loop_factory, run
from jobstate.server import SERVER_OPTIONS
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

LAYERS = ("noop", "await", "hop", "sqlite", "sqlite-loop")
Batch = list[tuple[str, float]]


class Writer:
    """Group commit reduced to its bones: waiting changes, one task writing them in batches."""

    def __init__(self, layer: str, db: sqlite3.Connection | None) -> None:
        self._layer = layer
        self._db = db
        self._thread = ThreadPoolExecutor(1)
        self._pending: list[tuple[str, float, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()

    async def submit(self, job_id: str, progress: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((job_id, progress, future))
        self._wake.set()
        await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                waiting, self._pending = self._pending, []
                batch = [(job_id, progress) for job_id, progress, _ in waiting]
                if self._layer == "sqlite-loop":
                    self._write(batch)
                elif self._layer != "await":
                    await loop.run_in_executor(self._thread, self._write, batch)
                for _, _, future in waiting:
                    future.set_result(None)

    def _write(self, batch: Batch) -> None:
        if self._db is None:
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany(
            "UPDATE jobs SET progress = ?, version = version + 1 WHERE job_id = ?",
            [(progress, job_id) for job_id, progress in batch],
        )
        self._db.executemany("INSERT INTO events (job_id, progress) VALUES (?, ?)", batch)
        self._db.execute("COMMIT")


def open_db(directory: str) -> sqlite3.Connection:
    db = sqlite3.connect(f"{directory}/floor.db", isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE jobs (job_id TEXT PRIMARY KEY, progress REAL, version INTEGER)")
    db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, job_id TEXT, progress REAL)")
    return db


class NoopServicer(pb_grpc.JobStateServiceServicer):
    def __init__(self, writer: Writer | None, db: sqlite3.Connection | None) -> None:
        self._writer = writer
        self._db = db

    async def ReportProgress(
        self,
        request: pb.ReportProgressRequest,
        context: grpc.aio.ServicerContext[pb.ReportProgressRequest, pb.ReportProgressResponse],
    ) -> pb.ReportProgressResponse:
        if self._writer is not None:
            await self._writer.submit(request.job_id, request.progress)
        return pb.ReportProgressResponse(job=pb.Job(job_id=request.job_id))

    async def CreateJob(
        self,
        request: pb.CreateJobRequest,
        context: grpc.aio.ServicerContext[pb.CreateJobRequest, pb.CreateJobResponse],
    ) -> pb.CreateJobResponse:
        if self._db is not None:  # setup, before the measured calls
            self._db.execute(
                "INSERT OR IGNORE INTO jobs VALUES (?, 0, 1)",
                (request.job_id,),
            )
        return pb.CreateJobResponse(job=pb.Job(job_id=request.job_id))


async def main(port: int, layer: str, directory: str) -> None:
    db = open_db(directory) if layer.startswith("sqlite") else None
    writer = None if layer == "noop" else Writer(layer, db)
    tasks = [asyncio.create_task(writer.run())] if writer is not None else []
    server = grpc.aio.server(options=SERVER_OPTIONS)
    # The stubs declare every RPC abstract; the generated base class answers the ones left out
    # here with UNIMPLEMENTED, which is all a baseline needs.
    servicer = NoopServicer(writer, db)  # type: ignore[abstract]
    pb_grpc.add_JobStateServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        await server.wait_for_termination()
    finally:
        for task in tasks:
            task.cancel()


if __name__ == "__main__":
    chosen = sys.argv[2] if len(sys.argv) > 2 else "noop"
    if chosen not in LAYERS:
        sys.exit(f"unknown layer {chosen!r}; one of {', '.join(LAYERS)}")
    if chosen.startswith("sqlite") and len(sys.argv) < 4:
        sys.exit(f"layer {chosen} needs a DIRECTORY for its database file")
    run(
        main(int(sys.argv[1]), chosen, sys.argv[3] if len(sys.argv) > 3 else ""),
        loop_factory(os.environ),
    )
