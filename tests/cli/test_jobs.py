"""`jobstate jobs list|get|cancel` against a real `jobstate serve`, output not a terminal."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import grpc
import pytest
from support.certs import self_signed
from support.fakerunpod import FakeRunPod
from support.ports import free_port
from support.processes import ServeProcess
from support.servers import sqlite_url

from jobstate.client import Job, JobStateClient, Status

from .commands import WAIT, Result, assert_one_line_error, command_env, jobs

EVERY_FIELD = {
    "job_id",
    "user_id",
    "kind",
    "status",
    "progress",
    "message",
    "output_key",
    "error",
    "version",
    "params",
    "external_id",
    "created_at",
    "updated_at",
    "completed_at",
}


async def _three_jobs(client: JobStateClient) -> None:
    """j1 (u1, pending), j2 (u2, processing at 40 %), j3 (u1, cancelled): created in order."""
    await client.create_job("u1", "overlay", {"source": "a.mp4"}, job_id="j1")
    await client.create_job("u2", "thumbnail", job_id="j2")
    await client.report_progress("j2", 40, "rendering")
    await client.create_job("u1", "overlay", job_id="j3")
    await client.cancel_job("j3", "not needed")


def _rows(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    assert lines[0].split() == ["JOB", "ID", "USER", "KIND", "STATUS", "PROGRESS", "AGE"]
    return [line.split() for line in lines[1:]]


async def test_list_is_a_table_newest_first(client: JobStateClient, env: dict[str, str]) -> None:
    await _three_jobs(client)
    result = await jobs("list", env=env)
    assert (result.code, result.stderr) == (0, "")
    rows = _rows(result.stdout)
    assert [row[:5] for row in rows] == [
        ["j3", "u1", "overlay", "cancelled", "0%"],
        ["j2", "u2", "thumbnail", "processing", "40%"],
        ["j1", "u1", "overlay", "pending", "0%"],
    ]
    assert all(re.fullmatch(r"\d+[smhd]", row[5]) for row in rows), rows


async def test_list_filters_and_limit(client: JobStateClient, env: dict[str, str]) -> None:
    await _three_jobs(client)

    async def ids(*args: str) -> list[str]:
        result = await jobs("list", *args, env=env)
        assert (result.code, result.stderr) == (0, ""), result
        return [row[0] for row in _rows(result.stdout)]

    assert await ids("--user", "u1") == ["j3", "j1"]
    assert await ids("--status", "cancelled") == ["j3"]
    assert await ids("--status", "pending", "--status", "processing") == ["j2", "j1"]
    assert await ids("--status", "pending,processing") == ["j2", "j1"]
    assert await ids("--user", "u1", "--status", "processing") == []
    assert await ids("--limit", "2") == ["j3", "j2"]


async def test_list_limit_spans_pages(client: JobStateClient, env: dict[str, str]) -> None:
    for i in range(105):
        await client.create_job("u1", job_id=f"p{i:03}")
    result = await jobs("list", "--limit", "103", "--json", env=env)
    assert [job["job_id"] for job in json.loads(result.stdout)] == [
        f"p{i:03}" for i in reversed(range(2, 105))
    ]


async def test_list_json_has_every_field(client: JobStateClient, env: dict[str, str]) -> None:
    await _three_jobs(client)
    result = await jobs("list", "--json", env=env)
    assert (result.code, result.stderr) == (0, "")
    listed = json.loads(result.stdout)
    assert [job["job_id"] for job in listed] == ["j3", "j2", "j1"]
    for item in listed:
        assert _same_job(item, await client.get_job(item["job_id"]))


def _same_job(item: dict[str, object], job: Job) -> bool:
    """The JSON carries every field of `job`, times as ISO-8601 with their zone."""
    assert set(item) == EVERY_FIELD
    for name in ("created_at", "updated_at", "completed_at"):
        value = item[name]
        expected = getattr(job, name)
        parsed = None if value is None else datetime.fromisoformat(str(value))
        assert parsed == expected and (parsed is None or parsed.tzinfo is not None), name
    plain = {k: v for k, v in item.items() if not k.endswith("_at")}
    return plain == {
        "job_id": job.job_id,
        "user_id": job.user_id,
        "kind": job.kind,
        "status": job.status.value,
        "progress": job.progress,
        "message": job.message,
        "output_key": job.output_key,
        "error": job.error,
        "version": job.version,
        "params": job.params,
        "external_id": job.external_id,
    }


async def test_bad_status_is_a_usage_error(env: dict[str, str]) -> None:
    result = await jobs("list", "--status", "pending,done", env=env)
    assert result.code == 2 and result.stdout == ""
    assert "unknown status 'done'" in result.stderr
    assert "pending, processing, complete, error, cancelled" in result.stderr
    assert "Traceback" not in result.stderr


async def test_get_prints_every_field(client: JobStateClient, env: dict[str, str]) -> None:
    await client.create_job("u1", "overlay", {"source": "a.mp4", "n": 2}, job_id="g")
    await client.mark_submitted("g", "rp-7")
    job = await client.complete_job("g", "exports/g/out.mp4")

    as_json = await jobs("get", "g", "--json", env=env)
    assert (as_json.code, as_json.stderr) == (0, "")
    assert _same_job(json.loads(as_json.stdout), job)

    human = await jobs("get", "g", env=env)
    assert (human.code, human.stderr) == (0, "")
    fields = dict(re.split(r":\s+", line, maxsplit=1) for line in human.lines)
    assert set(fields) == EVERY_FIELD
    assert {k: fields[k] for k in ("job_id", "status", "output_key", "external_id")} == {
        "job_id": "g",
        "status": "complete",
        "output_key": "exports/g/out.mp4",
        "external_id": "rp-7",
    }
    assert json.loads(fields["params"]) == {"source": "a.mp4", "n": 2}
    assert datetime.fromisoformat(fields["completed_at"]) == job.completed_at


async def test_get_missing_job_is_one_line(serve: ServeProcess, env: dict[str, str]) -> None:
    assert_one_line_error(await jobs("get", "nope", env=env), 1, "nope", "not found")
    assert_one_line_error(await jobs("get", "not/valid", env=env), 1, "job_id must match")


async def test_cancel_prints_the_new_status(client: JobStateClient, env: dict[str, str]) -> None:
    await client.create_job("u1", job_id="c")
    result = await jobs("cancel", "c", "--reason", "operator said so", env=env)
    assert (result.code, result.stdout, result.stderr) == (0, "cancelled\n", "")
    job = await client.get_job("c")
    assert (job.status, job.error, job.version) == (Status.CANCELLED, "operator said so", 2)
    again = await jobs("cancel", "c", env=env)  # harmless, as the service's CancelJob is
    assert (again.code, again.stdout, (await client.get_job("c")).version) == (0, "cancelled\n", 2)


@pytest.fixture
async def fake_runpod() -> AsyncIterator[FakeRunPod]:
    async with FakeRunPod() as fake:
        yield fake


def _runpod_env(env: dict[str, str], runpod: FakeRunPod) -> dict[str, str]:
    return {**env, "RUNPOD_ENDPOINT_URL": runpod.url, "RUNPOD_API_KEY": "rp-key"}


async def test_cancel_stops_the_runpod_job_too(
    client: JobStateClient, env: dict[str, str], fake_runpod: FakeRunPod
) -> None:
    """An operator's cancel must stop the GPU, as the owner's cancel through the gateway does;
    run again it asks RunPod again (its cancel is idempotent), so a failed first try can be
    repeated."""
    await client.create_job("u1", job_id="gpu")
    await client.mark_submitted("gpu", "rp-7")
    result = await jobs("cancel", "gpu", env=_runpod_env(env, fake_runpod))
    assert (result.code, result.stdout, result.stderr) == (0, "cancelled\n", "")
    assert fake_runpod.cancelled == ["rp-7"]
    assert fake_runpod.requests[-1].auth == "Bearer rp-key"
    again = await jobs("cancel", "gpu", env=_runpod_env(env, fake_runpod))
    assert (again.code, again.stdout, again.stderr) == (0, "cancelled\n", "")
    assert fake_runpod.cancelled == ["rp-7", "rp-7"]


async def test_cancel_says_when_runpod_was_not_told(
    client: JobStateClient, env: dict[str, str], fake_runpod: FakeRunPod
) -> None:
    await client.create_job("u1", job_id="gpu")
    await client.mark_submitted("gpu", "rp-8")
    unset = await jobs("cancel", "gpu", env=env)
    assert (unset.code, unset.stdout) == (0, "cancelled\n")
    assert unset.stderr == (
        "jobstate jobs cancel: RunPod job rp-8 was not cancelled: RUNPOD_ENDPOINT_URL is not set\n"
    )
    fake_runpod.cancel_status = 500
    refused = await jobs("cancel", "gpu", env=_runpod_env(env, fake_runpod))
    assert refused.stdout == "cancelled\n"
    assert_one_line_error(
        Result(refused.code, "", refused.stderr), 1, "RunPod job rp-8 was not cancelled", "500"
    )
    assert "boom" not in refused.stderr  # RunPod's own text is not passed on
    assert (await client.get_job("gpu")).status is Status.CANCELLED


async def test_cancel_without_a_runpod_job_or_with_bad_runpod_settings(
    client: JobStateClient, env: dict[str, str], fake_runpod: FakeRunPod
) -> None:
    await client.create_job("u1", job_id="never-submitted")
    result = await jobs("cancel", "never-submitted", env=_runpod_env(env, fake_runpod))
    assert (result.code, result.stdout, result.stderr) == (0, "cancelled\n", "")
    assert fake_runpod.cancelled == []
    no_key = await jobs("cancel", "never-submitted", env={**env, "RUNPOD_ENDPOINT_URL": "http://r"})
    assert_one_line_error(no_key, 2, "RUNPOD_API_KEY is required when RUNPOD_ENDPOINT_URL is set")
    bad_url = await jobs(
        "cancel", "never-submitted", env={**env, "RUNPOD_ENDPOINT_URL": "r", "RUNPOD_API_KEY": "k"}
    )
    assert_one_line_error(bad_url, 2, "RUNPOD_ENDPOINT_URL must be an http(s) URL, got 'r'")


async def test_cancel_of_a_finished_job_names_its_status(
    client: JobStateClient, env: dict[str, str]
) -> None:
    await client.create_job("u1", job_id="done")
    await client.complete_job("done", "exports/done/out.mp4")
    result = await jobs("cancel", "done", env=env)
    assert_one_line_error(result, 1, "done", "already complete")
    job = await client.get_job("done")
    assert (job.status, job.version) == (Status.COMPLETE, 2)


async def test_the_token_comes_from_the_environment(tmp_path: Path) -> None:
    token = "t" * 40
    proc = ServeProcess(database_url=sqlite_url(tmp_path), env={"JOBSTATE_API_TOKEN": token})
    await proc.start(within=WAIT)
    try:
        async with JobStateClient(proc.target, api_token=token, timeout=WAIT) as client:
            await client.create_job("u1", job_id="t")
        accepted = await jobs("get", "t", env=command_env(proc.target, JOBSTATE_API_TOKEN=token))
        refused = await jobs("get", "t", env=command_env(proc.target, JOBSTATE_API_TOKEN="x" * 40))
        missing = await jobs("get", "t", env=command_env(proc.target))
    finally:
        await proc.kill()
    assert (accepted.code, accepted.stderr) == (0, "")
    for result in (refused, missing):
        assert_one_line_error(result, 1, proc.target, "JOBSTATE_API_TOKEN")


async def test_tls_ca_from_flag_or_variable(tmp_path: Path) -> None:
    pair = self_signed(tmp_path / "certs")
    proc = ServeProcess(
        database_url=sqlite_url(tmp_path),
        args=("--tls-cert", str(pair.cert), "--tls-key", str(pair.key)),
        credentials=grpc.ssl_channel_credentials(pair.cert_pem),
    )
    await proc.start(within=WAIT)
    try:
        async with JobStateClient(proc.target, tls_ca=pair.cert, timeout=WAIT) as client:
            await client.create_job("u1", job_id="tls")
        by_flag = await jobs("get", "tls", "--tls-ca", str(pair.cert), env=command_env(proc.target))
        by_env = await jobs(
            "get", "tls", env=command_env(proc.target, JOBSTATE_TLS_CA=str(pair.cert))
        )
    finally:
        await proc.kill()
    assert [(r.code, r.lines[0].split()) for r in (by_flag, by_env)] == [
        (0, ["job_id:", "tls"])
    ] * 2


async def test_the_target_flag_wins_over_the_variable(
    serve: ServeProcess, client: JobStateClient
) -> None:
    await client.create_job("u1", job_id="f")
    nowhere = f"127.0.0.1:{free_port()}"
    result = await jobs("get", "f", "--jobstate-target", serve.target, env=command_env(nowhere))
    assert (result.code, result.stderr) == (0, "")


async def test_bad_configuration_names_the_variable_or_flag(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("hello")
    target = "127.0.0.1:1"
    cases = [
        (("--tls-ca", str(tmp_path / "missing.pem")), {}, ["--tls-ca", "cannot be read"]),
        ((), {"JOBSTATE_TLS_CA": str(not_pem)}, ["JOBSTATE_TLS_CA", "no PEM certificate"]),
        (("--jobstate-target", ""), {}, ["--jobstate-target", "empty"]),
        ((), {"JOBSTATE_API_TOKEN": "tökén"}, ["JOBSTATE_API_TOKEN", "ASCII"]),
    ]
    for args, extra, fragments in cases:
        result = await jobs("get", "x", *args, env=command_env(target, **extra))
        assert_one_line_error(result, 2, *fragments)


async def test_an_unreachable_service_is_one_line(tmp_path: Path) -> None:
    target = f"127.0.0.1:{free_port()}"
    result = await jobs("list", env=command_env(target))
    assert_one_line_error(result, 1, target)
