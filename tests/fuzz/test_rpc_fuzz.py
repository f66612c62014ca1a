"""Arbitrary field values at every RPC of a real server (hypothesis).

For every RPC, EXAMPLES generated requests (9 RPCs x 60 = 540 cases a run, fixed), each
aimed at a fresh pending or processing job, a finished job, or an arbitrary id:
- the answer is OK or one of the codes the contract names, never INTERNAL/UNKNOWN;
- a rejected request changes nothing (the job's version and state are unchanged);
- the server is still healthy and serving afterwards.
The server runs in a thread with its own event loop so hypothesis can drive a plain
synchronous channel.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support.servers import sqlite_url

from jobstate.config import ServiceConfig
from jobstate.server import RunningServer, start_server
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

EXAMPLES = 60
# Timestamps protobuf itself calls valid (0001-01-01 .. 9999-12-31, nanos 0..999999999); the
# invalid ones are test_invalid_updated_before below.
MIN_SECONDS, MAX_SECONDS = -62135596800, 253402300799
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
}
FINISHED = ("fz-complete", "fz-error", "fz-cancelled")
_fresh = itertools.count()


class ThreadedServer:
    """start_server on an event loop of its own thread."""

    def __init__(self, config: ServiceConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="fuzz-server", daemon=True
        )
        self.thread.start()
        self.running: RunningServer = self._run(start_server(config))

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self._run(self.running.stop(grace=1))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pb_grpc.JobStateServiceStub]:
    directory: Path = tmp_path_factory.mktemp("fuzz")
    server = ThreadedServer(
        ServiceConfig(
            listen="127.0.0.1:0", database_url=sqlite_url(directory), environment="development"
        )
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{server.running.port}")
    client = pb_grpc.JobStateServiceStub(channel)
    for job_id, finish in zip(FINISHED, ("CompleteJob", "FailJob", "CancelJob"), strict=True):
        client.CreateJob(pb.CreateJobRequest(job_id=job_id, user_id="owner"), timeout=10)
        args = {"output_key": "exports/x.mp4"} if finish == "CompleteJob" else {}
        request = getattr(pb, f"{finish}Request")(job_id=job_id, **args)
        getattr(client, finish)(request, timeout=10)
    try:
        yield client
        health = health_pb2_grpc.HealthStub(channel)
        # types-grpcio-health-checking declares HealthStub without its methods.
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=10)  # type: ignore[attr-defined]
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        job = client.CreateJob(pb.CreateJobRequest(user_id="after-fuzz"), timeout=10).job
        assert job.version == 1
    finally:
        channel.close()
        server.close()


# --- strategies ----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
# A surrogate cannot be put into a protobuf string at all (the request cannot be built), so
# only characters UTF-8 can encode, like st.text()'s default.
long_text = st.builds(lambda c, n: c * n, st.characters(codec="utf-8"), st.integers(0, 5000))
plain = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=40)
texts = st.one_of(
    plain, st.text(max_size=40), long_text, st.sampled_from(["", "\x00", "exports/a"])
)
job_ids = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"[A-Za-z0-9_-]{1,130}", fullmatch=True),
    st.sampled_from(["", "a" * 128, "a" * 129, "../x", "x y"]),
)
targets = st.sampled_from(["fresh-pending", "fresh-processing", *FINISHED])
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 100),
    st.sampled_from([0.0, 100.0, -0.0, 100.00000000000001]),
)


def struct_of(value: dict[str, Any]) -> Struct:
    struct = Struct()
    struct.update(value)
    return struct


def timestamp(seconds: int, nanos: int) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


def requests(job_id: str) -> dict[str, st.SearchStrategy[Any]]:
    """One strategy per RPC, aimed at `job_id` (three times in four) or an arbitrary id."""
    ids = st.sampled_from([job_id, job_id, job_id, None]).flatmap(
        lambda chosen: job_ids if chosen is None else st.just(chosen)
    )
    return {
        "CreateJob": st.builds(
            pb.CreateJobRequest,
            job_id=ids,
            user_id=texts,
            kind=texts,
            params=st.one_of(
                st.dictionaries(st.text(max_size=10), json_values, max_size=5),
                st.dictionaries(plain, plain | st.integers(-(10**9), 10**9), max_size=5),
            ).map(struct_of),
            idempotency_key=texts,
        ),
        "GetJob": st.builds(pb.GetJobRequest, job_id=ids),
        "ListJobs": st.builds(
            pb.ListJobsRequest,
            user_id=texts,
            page_size=st.integers(-(2**31), 2**31 - 1),
            page_token=st.text(max_size=60) | st.binary(max_size=40).map(lambda b: b.hex()),
            statuses=st.lists(st.integers(-3, 9), max_size=4),
            updated_before=st.builds(
                timestamp, st.integers(MIN_SECONDS, MAX_SECONDS), st.integers(0, 999_999_999)
            )
            | st.builds(Timestamp),
        ),
        "MarkSubmitted": st.builds(pb.MarkSubmittedRequest, job_id=ids, external_id=texts),
        "ReportProgress": st.builds(
            pb.ReportProgressRequest, job_id=ids, progress=floats, message=texts
        ),
        "CompleteJob": st.builds(pb.CompleteJobRequest, job_id=ids, output_key=texts),
        "FailJob": st.builds(pb.FailJobRequest, job_id=ids, error=texts),
        "CancelJob": st.builds(pb.CancelJobRequest, job_id=ids, reason=texts),
        "WatchJob": st.builds(
            pb.WatchJobRequest, job_id=ids, after_version=st.integers(0, 2**64 - 1)
        ),
        "WatchJobs": st.builds(
            pb.WatchJobsRequest,
            # Mostly a valid user, statuses and paths, so that many requests are served.
            user_id=st.one_of(st.just("owner"), st.just("owner"), texts),
            statuses=st.lists(st.integers(1, 5), max_size=3) | st.lists(st.integers(-3, 9)),
            after_versions=st.dictionaries(ids, st.integers(0, 2**64 - 1), max_size=2),
            read_mask=st.builds(
                FieldMask,
                paths=st.lists(st.sampled_from(["params", "progress", "kind"]), max_size=2)
                | st.lists(plain, max_size=1),
            ),
        ),
    }


# --- the property --------------------------------------------------------------------------


TERMINAL_STATUSES = (pb.JOB_STATUS_COMPLETE, pb.JOB_STATUS_ERROR, pb.JOB_STATUS_CANCELLED)


def _read(client: pb_grpc.JobStateServiceStub, job_id: str) -> pb.Job | None:
    try:
        return client.GetJob(pb.GetJobRequest(job_id=job_id), timeout=10).job
    except grpc.RpcError as exc:
        if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            return None
        raise


def _target(client: pb_grpc.JobStateServiceStub, target: str) -> str:
    if not target.startswith("fresh-"):
        return target
    job_id = f"fresh-{next(_fresh)}"
    client.CreateJob(pb.CreateJobRequest(job_id=job_id, user_id="owner"), timeout=10)
    if target == "fresh-processing":
        request = pb.MarkSubmittedRequest(job_id=job_id, external_id="rp-1")
        client.MarkSubmitted(request, timeout=10)
    return job_id


def _call(client: pb_grpc.JobStateServiceStub, rpc: str, request: Any) -> grpc.StatusCode:
    try:
        if rpc == "WatchJob":
            job = _read(client, request.job_id)
            if job is not None and request.after_version == job.version:
                # Nothing newer: a finished job's stream ends at once, an unfinished job's
                # stays open, quietly.
                if job.status in TERMINAL_STATUSES:
                    assert list(client.WatchJob(request, timeout=10)) == []
                    return grpc.StatusCode.OK
                with pytest.raises(grpc.RpcError) as waited:
                    next(client.WatchJob(request, timeout=0.5))
                assert waited.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                return grpc.StatusCode.OK
            stream = client.WatchJob(request, timeout=10)
            first = next(stream)
            stream.cancel()
            assert first.type == pb.EVENT_TYPE_SNAPSHOT or first.job.version > request.after_version
        elif rpc == "WatchJobs":
            feed = client.WatchJobs(request, timeout=10)
            # The initial state always ends, with the marker; then the stream stays open.
            while not next(feed).HasField("initial_state_complete"):
                pass
            feed.cancel()
        else:
            getattr(client, rpc)(request, timeout=10)
    except grpc.RpcError as exc:
        code = exc.code()
        assert code in ALLOWED, f"{rpc}({request!r:.300}) -> {code.name}: {exc.details()}"
        assert exc.details(), f"{rpc}: {code.name} without a message"
        return code
    return grpc.StatusCode.OK


@pytest.mark.parametrize("rpc", list(requests("x")))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_arbitrary_requests(client: pb_grpc.JobStateServiceStub, rpc: str, data: Any) -> None:
    job_id = _target(client, data.draw(targets, label="target"))
    request = data.draw(requests(job_id)[rpc], label="request")
    aimed_at = getattr(request, "job_id", "") or job_id
    before = _read(client, aimed_at)

    code = _call(client, rpc, request)
    event(code.name)

    if code != grpc.StatusCode.OK:
        assert _read(client, aimed_at) == before, f"{rpc} was refused ({code.name}) yet changed"


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(0, -1), (0, 10**9), (MAX_SECONDS + 1, 0), (-(2**63), 0)]
)
def test_invalid_updated_before(
    client: pb_grpc.JobStateServiceStub, seconds: int, nanos: int
) -> None:
    request = pb.ListJobsRequest(updated_before=timestamp(seconds, nanos))
    assert _call(client, "ListJobs", request) == grpc.StatusCode.INVALID_ARGUMENT
