"""Service auth: with JOBSTATE_API_TOKEN set, every RPC but health needs the bearer token.

Every method of JobStateService (unary and WatchJob) and server reflection is called without a
token, with a wrong one, with the token but not as `Bearer`, and with the right one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support.servers import service

from jobstate.server import RunningServer
from jobstate.v1 import jobstate_pb2 as pb

TOKEN = "a-long-random-service-token"
SERVICE = pb.DESCRIPTOR.services_by_name["JobStateService"]
METHODS = [m.name for m in SERVICE.methods]
WRONG = [
    ("no-metadata", ()),
    ("wrong-token", (("authorization", "Bearer wrong-token"),)),
    ("not-bearer", (("authorization", TOKEN),)),
    ("trailing-space", (("authorization", f"Bearer {TOKEN} "),)),
    ("empty-token", (("authorization", "Bearer "),)),
    ("lowercase-scheme", (("authorization", f"bearer {TOKEN}x"),)),
    ("other-header", (("x-api-token", TOKEN),)),
]
RIGHT = (("authorization", f"Bearer {TOKEN}"),)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with service(tmp_path, api_token=TOKEN) as running:
        yield running


@pytest.fixture
async def channel(server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel


def request_for(method: str, job_id: str) -> Any:
    descriptor = SERVICE.methods_by_name[method]
    request = getattr(pb, descriptor.input_type.name)()
    if "job_id" in descriptor.input_type.fields_by_name:
        request.job_id = job_id
    if method == "FollowJobs":
        request.follow.job_id = job_id
    return request


async def call(channel: grpc.aio.Channel, method: str, request: Any, metadata: Any) -> Any:
    """Call `method` generically; returns the reply (streams: the first message)."""
    path = f"/{SERVICE.full_name}/{method}"
    descriptor = SERVICE.methods_by_name[method]
    reply_type = getattr(pb, descriptor.output_type.name)
    if descriptor.client_streaming:
        bidi = channel.stream_stream(
            path,
            request_serializer=type(request).SerializeToString,
            response_deserializer=reply_type.FromString,
        )(iter([request]), metadata=metadata, timeout=10)
        async for reply in bidi:
            bidi.cancel()
            return reply
        return None
    if descriptor.server_streaming:
        stream = channel.unary_stream(
            path,
            request_serializer=type(request).SerializeToString,
            response_deserializer=reply_type.FromString,
        )(request, metadata=metadata, timeout=10)
        async for reply in stream:
            stream.cancel()
            return reply
        return None
    rpc = channel.unary_unary(
        path,
        request_serializer=type(request).SerializeToString,
        response_deserializer=reply_type.FromString,
    )
    return await rpc(request, metadata=metadata, timeout=10)


@pytest.mark.parametrize("method", METHODS)
async def test_every_rpc_without_the_token_is_unauthenticated(
    server: RunningServer, channel: grpc.aio.Channel, method: str
) -> None:
    job = (await call(channel, "CreateJob", pb.CreateJobRequest(user_id="u1"), RIGHT)).job
    outcomes = []
    for name, metadata in WRONG:
        try:
            await call(channel, method, request_for(method, job.job_id), metadata)
        except grpc.aio.AioRpcError as exc:
            outcomes.append((name, exc.code(), exc.details()))
        else:
            outcomes.append((name, grpc.StatusCode.OK, ""))

    denied = (grpc.StatusCode.UNAUTHENTICATED, "a valid service token is required")
    assert outcomes == [(name, *denied) for name, _ in WRONG]
    after = (await call(channel, "GetJob", pb.GetJobRequest(job_id=job.job_id), RIGHT)).job
    assert after.version == job.version  # nothing changed
    listed = await call(channel, "ListJobs", pb.ListJobsRequest(), RIGHT)
    assert len(listed.jobs) == 1  # nothing created


@pytest.mark.parametrize("method", METHODS)
async def test_the_right_token_is_let_through(
    server: RunningServer, channel: grpc.aio.Channel, method: str
) -> None:
    job = (await call(channel, "CreateJob", pb.CreateJobRequest(user_id="u1"), RIGHT)).job
    request = request_for(method, job.job_id)
    if method == "CreateJob":
        request.user_id = "u1"
    try:
        reply = await call(channel, method, request, RIGHT)
    except grpc.aio.AioRpcError as exc:  # empty fields are refused by validation, not auth
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc
    else:
        assert reply is not None


async def test_health_needs_no_token(channel: grpc.aio.Channel) -> None:
    # types-grpcio-health-checking declares HealthStub without its methods.
    reply = await health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
        health_pb2.HealthCheckRequest(), timeout=10
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def _list_services(channel: grpc.aio.Channel, metadata: Any) -> list[str]:
    # types-grpcio-reflection declares the stub for grpc.Channel only and its method as
    # binascii.Incomplete (not callable); grpc.aio.Channel works the same at run time.
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)  # type: ignore[arg-type]
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    calls = stub.ServerReflectionInfo(iter([request]), metadata=metadata, timeout=10)  # type: ignore[operator]
    async for reply in calls:
        return sorted(s.name for s in reply.list_services_response.service)
    return []


async def test_reflection_needs_the_token(channel: grpc.aio.Channel) -> None:
    assert SERVICE.full_name in await _list_services(channel, RIGHT)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _list_services(channel, ())
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_without_a_configured_token_no_metadata_is_needed(tmp_path: Path) -> None:
    async with (
        service(tmp_path) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        reply = await call(channel, "CreateJob", pb.CreateJobRequest(user_id="u1"), ())
    assert reply.job.version == 1
