"""Every REST route with its status codes; auth failures on every route; JSON errors."""

from __future__ import annotations

import io
import time
from collections.abc import Awaitable, Callable

import jwt
import pytest
from gwstack import BUCKET, JWT_SECRET, Stack

USER_ROUTES = [
    ("POST", "/api/export/overlay/start"),
    ("GET", "/api/jobs"),
    ("GET", "/api/jobs/{job}"),
    ("POST", "/api/jobs/{job}/cancel"),
    ("GET", "/api/storage/presigned-url?key=exports/x"),
]


def bad_tokens() -> list[tuple[str, str | None]]:
    now = int(time.time())
    return [
        ("missing", None),
        ("not a jwt", "Bearer abc.def.ghi"),
        ("wrong scheme", "Basic dTpw"),
        ("wrong key", "Bearer " + jwt.encode({"sub": "u1"}, "x" * 40, algorithm="HS256")),
        ("expired", "Bearer " + jwt.encode({"sub": "u1", "exp": now - 60}, JWT_SECRET, "HS256")),
        ("no sub", "Bearer " + jwt.encode({"exp": now + 60}, JWT_SECRET, "HS256")),
        ("alg none", "Bearer " + jwt.encode({"sub": "u1"}, "", algorithm="none")),
    ]


@pytest.mark.parametrize(("method", "path"), USER_ROUTES)
async def test_every_user_route_needs_a_valid_token(stack: Stack, method: str, path: str) -> None:
    job_id = await stack.start_job()
    before = await stack.get(f"/api/jobs/{job_id}")
    url = stack.url + path.format(job=job_id)
    log = []
    for name, header in bad_tokens():
        headers = {"Authorization": header} if header else {}
        async with stack.http.request(method, url, headers=headers, json={}) as response:
            log.append((name, response.status, "error" in await response.json()))
    assert log == [(name, 401, True) for name, _ in bad_tokens()]
    assert await stack.get(f"/api/jobs/{job_id}") == before
    assert len(stack.runpod.paths()) == 1  # nothing was submitted or cancelled


async def test_start_validates_the_body(stack: Stack) -> None:
    start = "/api/export/overlay/start"
    assert await stack.post(start, data=b"[1]") == (400, {"error": "body must be a JSON object"})
    assert await stack.post(start, data=b"{x") == (400, {"error": "body must be valid JSON"})
    assert (await stack.post(start, data=b'{"a":NaN}'))[0] == 400
    status, body = await stack.post(start, data=io.BytesIO(b'{"a":"' + b"x" * 70_000 + b'"}'))
    assert status == 413 and "too large" in body["error"]
    status, body = await stack.post(start, json={}, headers={"Idempotency-Key": "k" * 129})
    assert status == 400 and "Idempotency-Key" in body["error"]
    assert stack.runpod.paths() == []


async def test_idempotency_key_returns_the_same_job(stack: Stack) -> None:
    start = "/api/export/overlay/start"
    first = await stack.post(start, json={"a": 1}, headers={"Idempotency-Key": "k1"})
    again = await stack.post(start, json={"a": 1}, headers={"Idempotency-Key": "k1"})
    other_user = await stack.post(start, "u2", json={"a": 1}, headers={"Idempotency-Key": "k1"})
    assert first == again == (200, {"job_id": first[1]["job_id"], "status": "processing"})
    assert other_user[1]["job_id"] != first[1]["job_id"]
    assert stack.runpod.paths() == [("POST", "/run"), ("POST", "/run")]


async def test_other_users_jobs_look_like_missing_ones(stack: Stack) -> None:
    job_id = await stack.start_job("owner")
    missing = (404, {"error": "job not found"})
    for path in (f"/api/jobs/{job_id}", "/api/jobs/nope", "/api/jobs/bad%20id!"):
        assert await stack.get(path, "intruder") == missing
    assert await stack.post(f"/api/jobs/{job_id}/cancel", "intruder") == missing
    assert await stack.post("/api/jobs/nope/cancel", "intruder") == missing
    status, _ = await stack.get(f"/api/jobs/{job_id}", "owner")
    assert status == 200


async def test_list_is_newest_first_paginated_and_filtered(stack: Stack) -> None:
    ids = [await stack.start_job("lister") for _ in range(3)]
    await stack.start_job("someone-else")
    status, page1 = await stack.get("/api/jobs?page_size=2", "lister")
    assert status == 200 and page1["next_page_token"]
    token = page1["next_page_token"]
    _, page2 = await stack.get("/api/jobs", "lister", params={"page_size": 2, "page_token": token})
    listed = [job["job_id"] for job in page1["jobs"] + page2["jobs"]]
    assert listed == ids[::-1] and page2["next_page_token"] == ""
    await stack.post(f"/api/jobs/{ids[0]}/cancel", "lister")
    _, cancelled = await stack.get("/api/jobs?status=cancelled", "lister")
    assert [job["job_id"] for job in cancelled["jobs"]] == [ids[0]]
    for bad in ("page_size=0", "page_size=101", "page_size=x", "status=done"):
        status, body = await stack.get(f"/api/jobs?{bad}", "lister")
        assert status == 400 and body["error"]


async def test_cancel_cancels_here_and_at_runpod(stack: Stack) -> None:
    job_id = await stack.start_job()
    submission = await stack.runpod.next_submission()
    status, job = await stack.post(f"/api/jobs/{job_id}/cancel")
    assert (status, job["status"], job["version"]) == (200, "cancelled", 3)
    assert stack.runpod.requests[-1][:2] == ("POST", f"/cancel/{submission['id']}")
    assert stack.runpod.requests[-1][3] == "Bearer rp-key"
    assert (await stack.post(f"/api/jobs/{job_id}/cancel"))[0] == 200  # restating: harmless
    done = await stack.start_job()
    await stack.callback(done, {"status": "complete", "output_key": f"exports/{done}/d.mp4"})
    status, body = await stack.post(f"/api/jobs/{done}/cancel")
    assert status == 409 and "complete" in body["error"]


async def test_repeated_cancels_call_runpod_once(stack: Stack) -> None:
    job_id = await stack.start_job()
    submission = await stack.runpod.next_submission()
    answers = [await stack.post(f"/api/jobs/{job_id}/cancel") for _ in range(20)]
    assert {(status, job["status"], job["version"]) for status, job in answers} == {
        (200, "cancelled", 3)
    }
    cancels = [path for _, path in stack.runpod.paths() if path.startswith("/cancel/")]
    assert cancels == [f"/cancel/{submission['id']}"]  # the shared API key is spent once


async def test_cancelling_a_job_runpod_already_cancelled_does_not_call_runpod(
    stack: Stack,
) -> None:
    job_id = await stack.start_job()
    submission = await stack.runpod.next_submission()
    assert (await stack.callback(job_id, {"status": "CANCELLED", "id": submission["id"]}))[0] == 200
    status, job = await stack.post(f"/api/jobs/{job_id}/cancel")
    assert (status, job["status"], job["error"]) == (200, "cancelled", "cancelled on RunPod")
    assert stack.runpod.paths() == [("POST", "/run")]


async def test_presigned_url_only_for_the_owner_of_a_complete_job(stack: Stack) -> None:
    job_id = await stack.start_job("owner")
    key = f"exports/{job_id}/{job_id}.mp4"
    path = f"/api/storage/presigned-url?key=exports%2F{job_id}%2F{job_id}.mp4"
    assert (await stack.get(path, "owner"))[0] == 404  # not complete yet
    stack.s3.client().put_object(Bucket=BUCKET, Key=key, Body=b"video")
    await stack.callback(job_id, {"status": "complete", "output_key": key})
    assert (await stack.get(path, "intruder"))[0] == 404
    assert (await stack.get("/api/storage/presigned-url?key=exports/other", "owner"))[0] == 404
    assert (await stack.get("/api/storage/presigned-url", "owner"))[0] == 400
    status, signed = await stack.get(path, "owner")
    assert status == 200 and "X-Amz-Signature" in signed["url"]
    async with stack.http.get(signed["url"]) as response:
        assert (response.status, await response.read()) == (200, b"video")
        disposition = response.headers["Content-Disposition"]
        assert disposition == f'attachment; filename="{job_id}.mp4"'  # browsers save it


async def test_aiohttp_errors_are_json(stack: Stack) -> None:
    async with stack.http.get(f"{stack.url}/no/such/route") as response:
        assert (response.status, await response.json()) == (404, {"error": "not found"})
    async with stack.http.delete(f"{stack.url}/api/jobs") as response:
        assert response.status == 405 and "error" in await response.json()
        assert "GET" in response.headers["Allow"]


async def test_dev_token_exists_only_in_development(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    prod = await make_stack()
    assert await prod.get("/api/dev/token?user_id=u9", None) == (404, {"error": "not found"})
    dev = await make_stack(environment="development")
    status, body = await dev.get("/api/dev/token?user_id=u9", None)
    assert status == 200 and body["user_id"] == "u9"
    claims = jwt.decode(body["token"], JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "u9" and claims["exp"] > time.time()
    assert (await dev.get("/api/dev/token", None))[0] == 400


async def test_healthz_metrics_and_demo_page(
    stack: Stack, make_stack: Callable[..., Awaitable[Stack]]
) -> None:
    assert await stack.get("/healthz", None) == (200, {"status": "ok"})
    await stack.start_job()
    async with stack.http.get(f"{stack.url}/metrics") as response:
        text = await response.text()
    assert response.status == 200
    for name in (
        "gateway_websockets_open",
        "gateway_ws_messages_sent_total",
        "gateway_ws_messages_dropped_total",
        "gateway_callbacks_total",
        'gateway_grpc_call_seconds_bucket{code="OK",le="0.005",method="CreateJob"}',
    ):
        assert name in text
    async with stack.http.get(stack.url + "/") as response:
        assert response.status == 200 and response.content_type == "text/html"
    dead = await make_stack(jobstate_target="127.0.0.1:1")
    status, body = await dead.get("/healthz", None)
    assert status == 503 and "unreachable" in body["error"]
    status, body = await dead.get("/api/jobs/abc")
    assert status == 503 and "unavailable" in body["error"]


async def test_cors_follows_allowed_origins(make_stack: Callable[..., Awaitable[Stack]]) -> None:
    stack = await make_stack(allowed_origins=("https://app.example",))
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
    }
    async with stack.http.options(f"{stack.url}/api/jobs", headers=preflight) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    evil = {**preflight, "Origin": "https://evil.example"}
    async with stack.http.options(f"{stack.url}/api/jobs", headers=evil) as response:
        assert response.status == 403
    headers = {**stack.auth("u1"), "Origin": "https://app.example"}
    async with stack.http.get(f"{stack.url}/api/jobs", headers=headers) as response:
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    headers["Origin"] = "https://evil.example"
    async with stack.http.get(f"{stack.url}/api/jobs", headers=headers) as response:
        assert "Access-Control-Allow-Origin" not in response.headers


async def test_access_log_never_shows_tokens(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="aiohttp.access")
    job_id = await stack.start_job()
    token = stack.callback_token(job_id)
    await stack.callback(job_id, {"status": "progress", "progress": 1})
    await stack.callback(job_id, {"status": "progress", "progress": "lots"})  # refused: 400
    ws = await stack.socket(job_id)
    await ws.next()
    await ws.close()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    # Answered callbacks are counted, not logged; a refused one is logged, without its token.
    assert logged.count(f"/api/jobs/{job_id}/do") == 1
    assert f'/api/jobs/{job_id}/do" 400' in logged
    assert token not in logged and "token=" not in logged and stack.token("u1") not in logged
