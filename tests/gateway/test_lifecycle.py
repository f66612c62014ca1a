"""The seed's whole job lifecycle through every real component, watched by three sockets."""

from __future__ import annotations

from typing import Any

import aiohttp
from gwstack import BUCKET, Stack


def shape(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a client sees, as small tuples."""
    out: list[tuple[Any, ...]] = []
    for m in messages:
        if m["type"] == "status":
            out.append(("status", m["version"], m["status"]))
        elif m["type"] == "progress":
            out.append(("progress", m["version"], m["progress"], m["message"]))
        elif m["type"] == "complete":
            out.append(("complete", m["version"], m["output_url"]))
        else:
            out.append((m["type"], m["version"]))
    return out


async def test_seed_lifecycle_three_sockets_and_download(stack: Stack) -> None:
    job_id = await stack.start_job("u1", {"clip": "c1", "overlay": {"text": "hi"}})
    submission = await stack.runpod.next_submission()
    assert submission["job_id"] == job_id
    assert submission["params"] == {"clip": "c1", "overlay": {"text": "hi"}}
    assert submission["callback_url"].startswith(f"{stack.url}/api/jobs/{job_id}/do?token=")
    assert submission["output_prefix"] == f"exports/{job_id}/"  # the only place it may write
    method, path, body, auth = stack.runpod.requests[0]
    assert (method, path, auth) == ("POST", "/run", "Bearer rp-key")
    assert body is not None and body["webhook"] == submission["callback_url"]

    status, job = await stack.get(f"/api/jobs/{job_id}")
    assert (status, job["status"], job["version"]) == (200, "processing", 2)

    sockets = [await stack.socket(job_id) for _ in range(3)]
    for ws in sockets:
        assert shape([await ws.next()]) == [("status", 2, "processing")]

    callback_url = submission["callback_url"]
    key = f"{submission['output_prefix']}{job_id}.mp4"
    stack.s3.client().put_object(Bucket=BUCKET, Key=key, Body=b"rendered video")
    async with aiohttp.ClientSession() as worker:  # RunPod posts to the URL it was given
        for body in (
            {"status": "progress", "progress": 25, "message": "Processing..."},
            {"status": "progress", "progress": 50, "message": "Encoding"},
            {"status": "complete", "output_key": key},
        ):
            async with worker.post(callback_url, json=body) as response:
                assert response.status == 200, await response.text()

    output_url = f"/api/storage/presigned-url?key=exports%2F{job_id}%2F{job_id}.mp4"
    expected = [
        ("progress", 3, 25.0, "Processing..."),
        ("progress", 4, 50.0, "Encoding"),
        ("complete", 5, output_url),
    ]
    for ws in sockets:
        assert shape(await ws.until(5)) == expected
        assert await ws.close_code() == 1000

    status, job = await stack.get(f"/api/jobs/{job_id}")
    assert (job["status"], job["progress"], job["output_key"]) == ("complete", 100.0, key)
    assert job["completed_at"] is not None

    status, signed = await stack.get(output_url)
    assert status == 200 and signed["expires_in"] > 0
    async with stack.http.get(signed["url"]) as response:
        assert response.status == 200
        assert await response.read() == b"rendered video"
