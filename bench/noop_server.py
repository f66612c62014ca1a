"""The raw baseline: a grpc.aio server whose ReportProgress does nothing.

Same service definition, same server options, same event loop (JOBSTATE_EVENT_LOOP, uvloop by
default), no store, no locks: what grpc.aio itself costs.
Usage: python bench/noop_server.py PORT
"""

from __future__ import annotations

import os
import sys

import grpc

from jobstate.loop import loop_factory, run
from jobstate.server import SERVER_OPTIONS
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc


class NoopServicer(pb_grpc.JobStateServiceServicer):
    async def ReportProgress(
        self,
        request: pb.ReportProgressRequest,
        context: grpc.aio.ServicerContext[pb.ReportProgressRequest, pb.ReportProgressResponse],
    ) -> pb.ReportProgressResponse:
        return pb.ReportProgressResponse(job=pb.Job(job_id=request.job_id))

    async def CreateJob(
        self,
        request: pb.CreateJobRequest,
        context: grpc.aio.ServicerContext[pb.CreateJobRequest, pb.CreateJobResponse],
    ) -> pb.CreateJobResponse:
        return pb.CreateJobResponse(job=pb.Job(job_id=request.job_id))


async def main(port: int) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    # The stubs declare every RPC abstract; the generated base class answers the ones left out
    # here with UNIMPLEMENTED, which is all a no-op baseline needs.
    servicer = NoopServicer()  # type: ignore[abstract]
    pb_grpc.add_JobStateServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    run(main(int(sys.argv[1])), loop_factory(os.environ))
