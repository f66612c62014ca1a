"""Submission to RunPod: refused, unreachable, and what is (not) retried."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from gwstack import Stack
from support.ports import free_port

ECHO = "<img src=x onerror=alert(1)> quota of account ops@example.com exceeded"


@pytest.mark.parametrize("answer", [500, 503, 400, 401])
async def test_runpod_refusing_makes_the_job_error_and_502(
    stack: Stack, answer: int, caplog: pytest.LogCaptureFixture
) -> None:
    stack.runpod.run_status = answer
    stack.runpod.error_text = ECHO
    status, body = await stack.post("/api/export/overlay/start", json={"clip": "x"})
    said = f"RunPod answered {answer}" + (
        " (not retried: /run is not idempotent)" if answer >= 500 else ""
    )
    assert (status, body["error"]) == (502, f"the GPU worker could not take the job: {said}")
    assert stack.runpod.paths() == [("POST", "/run")]  # /run is never retried once sent
    _, jobs = await stack.get("/api/jobs")
    [job] = jobs["jobs"]
    assert (job["status"], job["error"]) == (
        "error",
        f"submission to the GPU worker failed: {said}",
    )
    assert body["job_id"] == job["job_id"]
    # What RunPod said reaches the logs only.
    assert any(ECHO in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("answered", ["..", "../purge-queue", "a b", "", 42, None, "x" * 129])
async def test_an_id_from_run_that_is_not_a_runpod_id_is_never_used(
    stack: Stack, answered: object
) -> None:
    stack.runpod.run_id = answered if answered is not None else {"nested": 1}
    status, body = await stack.post("/api/export/overlay/start", json={"clip": "x"})
    assert status == 502, body
    _, job = await stack.get(f"/api/jobs/{body['job_id']}")
    assert job["status"] == "error"
    assert (await stack.post(f"/api/jobs/{body['job_id']}/cancel"))[0] == 409
    assert stack.runpod.paths() == [("POST", "/run")]  # no URL was built from that id


async def test_runpod_unreachable_makes_the_job_error_and_502(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack(runpod_endpoint_url=f"http://127.0.0.1:{free_port()}")
    status, body = await stack.post("/api/export/overlay/start", json={"clip": "x"})
    assert (status, body["error"]) == (
        502,
        "the GPU worker could not take the job: RunPod is unreachable",
    )
    _, jobs = await stack.get("/api/jobs")
    assert [(j["status"], j["error"]) for j in jobs["jobs"]] == [
        ("error", "submission to the GPU worker failed: RunPod is unreachable")
    ]  # no address or OS error: those are in the log
    async with stack.http.get(f"{stack.url}/metrics") as response:
        text = await response.text()
    # Nothing was sent, so the connection was tried again, a bounded number of times.
    assert 'gateway_runpod_requests_total{operation="run",outcome="unreachable"} 3.0' in text


async def test_cancel_survives_runpod_being_down(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack()
    job_id = await stack.start_job()
    stack.runpod.run_status = 500
    down = await make_stack(runpod_endpoint_url=f"http://127.0.0.1:{free_port()}")
    status, job = await down.post(f"/api/jobs/{job_id}/cancel")
    assert (status, job["status"]) == (200, "cancelled")


async def test_simulated_worker_walks_the_job_to_complete_over_http(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack(runpod_endpoint_url="", runpod_api_key="", simulated_worker=True)
    job_id = await stack.start_job("sim-user")
    ws = await stack.socket(job_id, "sim-user")
    messages: list[dict[str, Any]] = []
    while not messages or messages[-1]["type"] != "complete":
        messages.append(await ws.next())
    progress = [m["progress"] for m in messages if m["type"] == "progress"]
    assert progress == sorted(progress) and progress[-1] == 90.0
    key = f"exports/{job_id}/{job_id}.mp4"  # inside the job's own output_prefix
    assert messages[-1]["output_url"] == "/api/storage/presigned-url?key=" + quote(key, safe="")
    status, signed = await stack.get(messages[-1]["output_url"], "sim-user")
    assert status == 200
    async with stack.http.get(signed["url"]) as response:
        assert await response.read() == f"simulated export {job_id}\n".encode()
    _, job = await stack.get(f"/api/jobs/{job_id}", "sim-user")
    assert (job["status"], job["output_key"]) == ("complete", key)
    assert stack.runpod.paths() == []


async def test_development_without_r2_serves_outputs_itself(
    make_stack: Callable[..., Awaitable[Stack]], tmp_path: Path
) -> None:
    stack = await make_stack(
        environment="development",
        runpod_endpoint_url="",
        r2_endpoint_url="",
        data_dir=str(tmp_path),
    )
    job_id = await stack.start_job("dev")
    ws = await stack.socket(job_id, "dev")
    message = await ws.next()
    while message["type"] != "complete":
        message = await ws.next()
    status, signed = await stack.get(message["output_url"], "dev")
    assert status == 200 and signed["url"].startswith(f"{stack.url}/api/dev/outputs/exports/")
    async with stack.http.get(signed["url"]) as response:
        assert await response.read() == f"simulated export {job_id}\n".encode()
        disposition = response.headers["Content-Disposition"]
        assert disposition == f'attachment; filename="{job_id}.mp4"'
    assert (tmp_path / "outputs" / "exports" / job_id / f"{job_id}.mp4").is_file()
    for tampered in (
        signed["url"].replace("sig=", "sig=0"),
        signed["url"].replace("exports/", "x/"),
    ):
        async with stack.http.get(tampered) as response:
            assert response.status == 404
    escape = f"{stack.url}/api/dev/outputs/..%2F..%2Fjwt_secret?expires=9999999999&sig=0"
    async with stack.http.get(escape) as response:
        assert response.status == 404


async def test_production_without_r2_cannot_sign(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack(r2_endpoint_url="")
    job_id = await stack.start_job()
    key = quote(f"exports/{job_id}/p.mp4", safe="")
    await stack.callback(job_id, {"status": "complete", "output_key": f"exports/{job_id}/p.mp4"})
    status, body = await stack.get(f"/api/storage/presigned-url?key={key}")
    assert status == 503 and "R2_ENDPOINT_URL" in body["error"]


@pytest.mark.parametrize(("answer", "attempts"), [(503, 3), (404, 1)])
async def test_cancel_retries_5xx_a_bounded_number_of_times_never_4xx(
    stack: Stack, answer: int, attempts: int
) -> None:
    job_id = await stack.start_job()
    submission = await stack.runpod.next_submission()
    stack.runpod.cancel_status = answer
    status, job = await stack.post(f"/api/jobs/{job_id}/cancel")
    assert (status, job["status"]) == (200, "cancelled")  # cancelled here either way
    cancels = [p for p in stack.runpod.paths() if p[1].startswith("/cancel/")]
    assert cancels == [("POST", f"/cancel/{submission['id']}")] * attempts
