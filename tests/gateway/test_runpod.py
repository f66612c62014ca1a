"""Submission to RunPod: refused, unreachable, and what is (not) retried."""

from __future__ import annotations

import pytest
from gwstack import Stack, free_port


@pytest.mark.parametrize("answer", [500, 503, 400, 401])
async def test_runpod_refusing_makes_the_job_error_and_502(stack: Stack, answer: int) -> None:
    stack.runpod.run_status = answer
    status, body = await stack.post("/api/export/overlay/start", json={"clip": "x"})
    assert status == 502 and f"answered {answer}" in body["error"]
    assert stack.runpod.paths() == [("POST", "/run")]  # /run is never retried once sent
    _, jobs = await stack.get("/api/jobs")
    [job] = jobs["jobs"]
    assert job["status"] == "error" and "submission to the GPU worker failed" in job["error"]
    assert body["job_id"] == job["job_id"]


async def test_runpod_unreachable_makes_the_job_error_and_502(make_stack) -> None:
    stack = await make_stack(runpod_endpoint_url=f"http://127.0.0.1:{free_port()}")
    status, body = await stack.post("/api/export/overlay/start", json={"clip": "x"})
    assert status == 502 and "unreachable" in body["error"]
    _, jobs = await stack.get("/api/jobs")
    assert [(j["status"], "unreachable" in j["error"]) for j in jobs["jobs"]] == [("error", True)]
    async with stack.http.get(f"{stack.url}/metrics") as response:
        text = await response.text()
    # Nothing was sent, so the connection was tried again, a bounded number of times.
    assert 'gateway_runpod_requests_total{operation="run",outcome="unreachable"} 3.0' in text


async def test_cancel_survives_runpod_being_down(make_stack) -> None:
    stack = await make_stack()
    job_id = await stack.start_job()
    stack.runpod.run_status = 500
    down = await make_stack(runpod_endpoint_url=f"http://127.0.0.1:{free_port()}")
    status, job = await down.post(f"/api/jobs/{job_id}/cancel")
    assert (status, job["status"]) == (200, "cancelled")


async def test_simulated_worker_walks_the_job_to_complete_over_http(make_stack) -> None:
    stack = await make_stack(runpod_endpoint_url="", runpod_api_key="", simulated_worker=True)
    job_id = await stack.start_job("sim-user")
    ws = await stack.socket(job_id, "sim-user")
    messages = []
    while not messages or messages[-1]["type"] != "complete":
        messages.append(await ws.next())
    progress = [m["progress"] for m in messages if m["type"] == "progress"]
    assert progress == sorted(progress) and progress[-1] == 90.0
    key = f"exports/{job_id}.mp4"
    assert messages[-1]["output_url"] == f"/api/storage/presigned-url?key=exports%2F{job_id}.mp4"
    status, signed = await stack.get(messages[-1]["output_url"], "sim-user")
    assert status == 200
    async with stack.http.get(signed["url"]) as response:
        assert await response.read() == f"simulated export {job_id}\n".encode()
    _, job = await stack.get(f"/api/jobs/{job_id}", "sim-user")
    assert (job["status"], job["output_key"]) == ("complete", key)
    assert stack.runpod.paths() == []


async def test_development_without_r2_serves_outputs_itself(make_stack, tmp_path) -> None:
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
    assert (tmp_path / "outputs" / "exports" / f"{job_id}.mp4").is_file()
    for tampered in (
        signed["url"].replace("sig=", "sig=0"),
        signed["url"].replace("exports/", "x/"),
    ):
        async with stack.http.get(tampered) as response:
            assert response.status == 404
    escape = f"{stack.url}/api/dev/outputs/..%2F..%2Fjwt_secret?expires=9999999999&sig=0"
    async with stack.http.get(escape) as response:
        assert response.status == 404


async def test_production_without_r2_cannot_sign(make_stack) -> None:
    stack = await make_stack(r2_endpoint_url="")
    job_id = await stack.start_job()
    await stack.callback(job_id, {"status": "complete", "output_key": "exports/p.mp4"})
    status, body = await stack.get("/api/storage/presigned-url?key=exports%2Fp.mp4")
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
