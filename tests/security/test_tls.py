"""TLS on the gRPC port (`--tls-cert/--tls-key`) with a certificate made by the test, the
clients' side (JOBSTATE_TLS_CA for the gateway and the reconciler), and the production rule
that a non-loopback listen address needs JOBSTATE_API_TOKEN."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from support.certs import self_signed
from support.processes import ServeProcess, run_serve
from support.servers import service, sqlite_url

from gateway.config import GatewayConfig
from gateway.reconcile import ReconcileConfig, Reconciler
from gateway.server import Gateway
from gateway.upstream import connect
from jobstate.client import Status
from jobstate.config import ConfigError, ServiceConfig
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.v1 import jobstate_pb2_grpc as pb_grpc

TOKEN = "tls-test-token-0123456789abcdefghij"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


async def test_tls_with_token_serves_trusting_clients_only(tmp_path: Path) -> None:
    pair = self_signed(tmp_path / "tls")
    other = self_signed(tmp_path / "other", "other")
    async with service(
        tmp_path, api_token=TOKEN, tls_cert=str(pair.cert), tls_key=str(pair.key)
    ) as server:
        target = f"127.0.0.1:{server.port}"
        trusted = grpc.ssl_channel_credentials(root_certificates=pair.cert_pem)
        async with grpc.aio.secure_channel(target, trusted) as channel:
            stub = pb_grpc.JobStateServiceStub(channel)
            reply = await stub.CreateJob(
                pb.CreateJobRequest(user_id="u1"), metadata=AUTH, timeout=10
            )
            assert reply.job.version == 1
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetJob(pb.GetJobRequest(job_id=reply.job.job_id), timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED

        untrusted = grpc.ssl_channel_credentials(root_certificates=other.cert_pem)
        async with grpc.aio.secure_channel(target, untrusted) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await pb_grpc.JobStateServiceStub(channel).GetJob(
                    pb.GetJobRequest(job_id=reply.job.job_id), metadata=AUTH, timeout=5
                )
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE

        async with grpc.aio.insecure_channel(target) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await pb_grpc.JobStateServiceStub(channel).GetJob(
                    pb.GetJobRequest(job_id=reply.job.job_id), metadata=AUTH, timeout=5
                )
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_serve_command_takes_tls_flags(tmp_path: Path) -> None:
    pair = self_signed(tmp_path / "tls")
    proc = ServeProcess(
        database_url=sqlite_url(tmp_path),
        args=("--tls-cert", str(pair.cert), "--tls-key", str(pair.key)),
        credentials=grpc.ssl_channel_credentials(root_certificates=pair.cert_pem),
    )
    await proc.start()
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=pair.cert_pem)
        async with grpc.aio.secure_channel(proc.target, creds) as channel:
            reply = await pb_grpc.JobStateServiceStub(channel).CreateJob(
                pb.CreateJobRequest(user_id="u1"), timeout=10
            )
        assert reply.job.status == pb.JOB_STATUS_PENDING
    finally:
        assert await proc.stop() == 0


def test_tls_cert_without_key_is_one_clear_line(tmp_path: Path) -> None:
    pair = self_signed(tmp_path / "tls")
    result = run_serve(
        "--listen", "127.0.0.1:0", "--database-url", sqlite_url(tmp_path),
        "--tls-cert", str(pair.cert),
        env={"ENVIRONMENT": "development"},
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (
        2,
        "jobstate serve: --tls-cert and --tls-key must be given together\n",
    )


def test_a_missing_tls_file_is_named(tmp_path: Path) -> None:
    pair = self_signed(tmp_path / "tls")
    missing = tmp_path / "missing.crt"
    with pytest.raises(ConfigError) as info:
        ServiceConfig.from_env(
            {"ENVIRONMENT": "development"}, tls_cert=str(missing), tls_key=str(pair.key)
        )
    assert str(info.value) == f"--tls-cert {str(missing)!r} is not a readable file"


def test_production_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    result = run_serve(
        "--listen", "0.0.0.0:0", "--database-url", sqlite_url(tmp_path),
        env={"ENVIRONMENT": "production", "JOBSTATE_API_TOKEN": ""},
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (
        2,
        "jobstate serve: refusing to listen on non-loopback 0.0.0.0:0 in production without "
        "JOBSTATE_API_TOKEN\n",
    )


async def test_gateway_and_reconciler_reach_a_tls_service_with_jobstate_tls_ca(
    tmp_path: Path,
) -> None:
    pair = self_signed(tmp_path / "tls")
    async with service(
        tmp_path, api_token=TOKEN, tls_cert=str(pair.cert), tls_key=str(pair.key)
    ) as server:
        target = f"127.0.0.1:{server.port}"
        env = {
            "ENVIRONMENT": "production",
            "JOBSTATE_JWT_SECRET": "tls-test-jwt-secret-that-is-long-enough",
            "JOBSTATE_CALLBACK_SECRET": "tls-test-callback-secret-0123456789",
            "JOBSTATE_API_TOKEN": TOKEN,
            "GATEWAY_SIMULATED_WORKER": "1",
            "JOBSTATE_TARGET": target,
            "GATEWAY_LISTEN": "127.0.0.1:0",
        }
        healthz = {}
        for name, extra in (("with-ca", {"JOBSTATE_TLS_CA": str(pair.cert)}), ("without", {})):
            gateway = Gateway(GatewayConfig.from_env({**env, **extra}))
            await gateway.start()
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"{gateway.url}/healthz") as response,
                ):
                    healthz[name] = response.status
            finally:
                await gateway.stop()
        assert healthz == {"with-ca": 200, "without": 503}

        config = ReconcileConfig.from_env({**env, "JOBSTATE_TLS_CA": str(pair.cert)})
        client = connect(config)
        try:
            job = await client.create_job("u1", "overlay", {})
            summary = await Reconciler(client, None, stale_after=0).run_once()
            after = await client.get_job(job.job_id)
        finally:
            await client.close()
        assert (summary, after.status) == ({"examined": 1, "failed": 1}, Status.ERROR)


@pytest.mark.parametrize("build", [GatewayConfig.from_env, ReconcileConfig.from_env])
def test_a_missing_tls_ca_file_is_a_configuration_error(tmp_path: Path, build: Any) -> None:
    env = {
        "JOBSTATE_JWT_SECRET": "x" * 40,
        "JOBSTATE_CALLBACK_SECRET": "y" * 40,
        "GATEWAY_SIMULATED_WORKER": "1",
        "JOBSTATE_TLS_CA": str(tmp_path / "nope.crt"),
    }
    with pytest.raises(ValueError, match=r"JOBSTATE_TLS_CA '.*nope\.crt' is not a readable file"):
        build(env)
