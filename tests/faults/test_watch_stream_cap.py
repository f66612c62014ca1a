"""JOBSTATE_MAX_WATCH_STREAMS: a process serves at most that many WatchJob streams at once;
one more is RESOURCE_EXHAUSTED with a message, and a freed slot can be used again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from support.servers import create_job, next_event, service, stub

from jobstate.v1 import jobstate_pb2 as pb

CAP = 3


async def test_watch_streams_beyond_the_cap_are_refused(tmp_path: Path) -> None:
    async with (
        service(tmp_path, max_watch_streams=CAP) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        client = stub(channel)
        await create_job(client, "watched")
        request = pb.WatchJobRequest(job_id="watched")
        streams = [client.WatchJob(request) for _ in range(CAP)]
        for stream in streams:  # each is being served: its SNAPSHOT arrived
            assert (await next_event(stream)).type == pb.EVENT_TYPE_SNAPSHOT

        extra = client.WatchJob(request, timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await extra.read()
        assert (info.value.code(), info.value.details()) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"this server already serves {CAP} WatchJob streams",
        )

        streams.pop().cancel()

        async def slot_free() -> pb.WatchJobResponse:
            while True:  # the cancelled stream's slot is released as its handler unwinds
                again = client.WatchJob(request, timeout=10)
                try:
                    first = await next_event(again)
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    await asyncio.sleep(0.05)
                else:
                    streams.append(again)
                    return first

        assert (await asyncio.wait_for(slot_free(), 20)).type == pb.EVENT_TYPE_SNAPSHOT
        # Every stream being served still works: they get the next event.
        await client.ReportProgress(pb.ReportProgressRequest(job_id="watched", progress=5))
        for stream in streams:
            assert (await next_event(stream)).job.version == 2
            stream.cancel()
