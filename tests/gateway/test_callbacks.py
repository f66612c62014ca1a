"""`POST /api/jobs/{id}/do`: bodies in both formats, repeats, bad input that changes nothing."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from gwstack import BUCKET, Stack


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b'{"status":"progress","progress":NaN}', 400),
        (b'{"status":"progress","progress":Infinity}', 400),
        (b'{"status":"progress","progress":1e999}', 400),
        ({"status": "progress", "progress": -1}, 400),
        ({"status": "progress", "progress": 101}, 400),
        ({"status": "progress", "progress": "50"}, 400),
        ({"status": "progress", "progress": True}, 400),
        ({"status": "progress"}, 400),
        ({"status": "progress", "progress": 5, "message": 7}, 400),
        ({"status": "bogus"}, 400),
        ({"status": "RUNNING"}, 400),
        ({"progress": 5}, 400),
        ({"status": "complete", "output_key": "elsewhere/x.mp4"}, 400),
        ({"status": "complete"}, 400),
        ({"status": "COMPLETED", "output": {"output_key": "../etc/passwd"}}, 400),
        ({"status": "IN_PROGRESS"}, 400),
        # RunPod ids are plain: nothing that could reach another RunPod path.
        ({"status": "IN_PROGRESS", "id": ".."}, 400),
        ({"status": "IN_QUEUE", "id": "a/b"}, 400),
        ({"status": "IN_PROGRESS", "id": "rp 1"}, 400),
        ({"status": "IN_PROGRESS", "id": "x" * 129}, 400),
        ({"status": "IN_PROGRESS", "id": 7}, 400),
        ({"status": "COMPLETED", "id": "../x", "output": {}}, 400),
        ([1, 2], 400),
        (b'"progress"', 400),
        (b"\xff\xfe", 400),
        (b"{" + b'"pad":"' + b"x" * (2 * 1024 * 1024) + b'"}', 413),
    ],
)
async def test_bad_bodies_change_nothing(stack: Stack, body: object, status: int) -> None:
    job_id = await stack.start_job()
    before = await stack.get(f"/api/jobs/{job_id}")
    got, answer = await stack.callback(job_id, body)
    assert got == status
    assert isinstance(answer["error"], str) and answer["error"]
    assert await stack.get(f"/api/jobs/{job_id}") == before


@pytest.mark.parametrize("token", ["", "0" * 64, "not-hex"])
async def test_bad_token_is_401_and_changes_nothing(stack: Stack, token: str) -> None:
    job_id = await stack.start_job()
    before = await stack.get(f"/api/jobs/{job_id}")
    got, answer = await stack.callback(job_id, {"status": "progress", "progress": 50}, token)
    assert (got, answer) == (401, {"error": "missing or invalid callback token"})
    other = await stack.start_job()
    got, _ = await stack.callback(
        job_id, {"status": "progress", "progress": 50}, stack.callback_token(other)
    )
    assert got == 401
    assert await stack.get(f"/api/jobs/{job_id}") == before


async def test_unknown_job_with_valid_token_is_404(stack: Stack) -> None:
    got, answer = await stack.callback("no-such-job", {"status": "progress", "progress": 1})
    assert (got, answer) == (404, {"error": "job not found"})


async def test_seed_format_repeats_and_409_after_finish(stack: Stack) -> None:
    job_id = await stack.start_job()
    key, other = f"exports/{job_id}/j.mp4", f"exports/{job_id}/other.mp4"
    log = []
    for body in (
        {"status": "progress", "progress": 40, "message": "a"},
        {"status": "progress", "progress": 40, "message": "a"},  # repeat: no new version
        {"status": "progress", "progress": 10},  # lower: accepted and ignored
        {"status": "complete", "output_key": key},
        {"status": "complete", "output_key": key},  # repeat
        {"status": "COMPLETED", "id": "rp-1", "output": {"output_key": key}},
        {"status": "COMPLETED", "id": "rp-1", "output": {}},  # webhook without output: repeat
        {"status": "progress", "progress": 90},  # lower than 100: accepted and ignored
        {"status": "error", "error": "late"},
        {"status": "complete", "output_key": other},
        {"status": "CANCELLED", "id": "rp-1"},
    ):
        got, answer = await stack.callback(job_id, body)
        log.append((got, answer.get("status"), answer.get("version")))
    assert log == [
        (200, "processing", 3),
        (200, "processing", 3),
        (200, "processing", 3),
        (200, "complete", 4),
        (200, "complete", 4),
        (200, "complete", 4),
        (200, "complete", 4),
        (200, "complete", 4),
        (409, None, None),
        (409, None, None),
        (409, None, None),
    ]
    _, job = await stack.get(f"/api/jobs/{job_id}")
    assert (job["status"], job["version"], job["progress"]) == ("complete", 4, 100.0)


@pytest.mark.parametrize(
    ("bodies", "final"),
    [
        (
            [
                {"status": "error", "error": "ffmpeg exited 1"},
                {"status": "FAILED", "id": "x", "error": "ffmpeg exited 1"},
            ],
            ("error", "ffmpeg exited 1"),
        ),
        ([{"status": "FAILED", "id": "x"}], ("error", "the RunPod job failed")),
        (
            [{"status": "TIMED_OUT", "id": "x"}, {"status": "TIMED_OUT", "id": "x"}],
            ("error", "the RunPod job timed out"),
        ),
        (
            [{"status": "CANCELLED", "id": "x"}, {"status": "CANCELLED", "id": "x"}],
            ("cancelled", "cancelled on RunPod"),
        ),
        (
            [{"status": "COMPLETED", "id": "x", "output": {"output_key": "exports/{job}/k"}}],
            ("complete", ""),
        ),
    ],
)
async def test_runpod_webhook_formats(
    stack: Stack, bodies: list[dict[str, Any]], final: tuple[str, str]
) -> None:
    job_id = await stack.start_job()
    for body in bodies:
        body = json.loads(json.dumps(body).replace("{job}", job_id))
        got, _ = await stack.callback(job_id, body)
        assert got == 200
    _, job = await stack.get(f"/api/jobs/{job_id}")
    assert (job["status"], job["error"]) == final
    assert job["version"] == 3  # created, submitted, finished: repeats made no version


@pytest.mark.parametrize(
    "body",
    [
        {"status": "error", "error": "ffmpeg\x00 " + "e" * 5000},
        {"status": "FAILED", "id": "rp-x", "error": "ffmpeg\x00 " + "e" * 5000},
    ],
    ids=["seed", "runpod"],
)
async def test_the_workers_error_is_kept_bounded(stack: Stack, body: dict[str, Any]) -> None:
    """The worker's own message reaches the user, cut to what a job holds (4,096)."""
    job_id = await stack.start_job()
    got, answer = await stack.callback(job_id, body)
    assert (got, answer["status"]) == (200, "error")
    _, job = await stack.get(f"/api/jobs/{job_id}")
    assert job["error"] == ("ffmpeg " + "e" * 5000)[:4096]


async def test_in_progress_webhook_only_touches_status(stack: Stack) -> None:
    stack.runpod.run_status = 200
    job_id = await stack.start_job()
    submission = await stack.runpod.next_submission()
    got, answer = await stack.callback(job_id, {"status": "IN_PROGRESS", "id": submission["id"]})
    assert (got, answer["status"], answer["version"]) == (200, "processing", 2)
    got, answer = await stack.callback(job_id, {"status": "IN_QUEUE", "id": submission["id"]})
    assert (got, answer["version"]) == (200, 2)


def outside_the_jobs_prefix(job_id: str, other: str) -> list[str]:
    """Output keys a callback of `job_id` must refuse: `exports/{job_id}/` and nothing else."""
    mine = f"exports/{job_id}/"
    return [
        f"exports/{other}/out.mp4",  # another job's output
        f"exports/{other}.mp4",
        f"exports/{job_id}.mp4",  # beside the prefix, not in it
        f"exports/{job_id}x/out.mp4",
        "elsewhere/out.mp4",
        mine,  # the prefix itself names no file
        f"{mine}../{other}/out.mp4",  # traversal
        f"{mine}..",
        f"{mine}./out.mp4",
        f"{mine}a//b.mp4",
        f"{mine}a\\..\\b.mp4",
        f"{mine}a\nb.mp4",
        mine + "k" * 1024,
    ]


@pytest.mark.parametrize("runpod_format", [False, True], ids=["seed", "runpod"])
async def test_an_output_key_must_be_inside_the_jobs_own_prefix(
    stack: Stack, runpod_format: bool
) -> None:
    job_id, other = await stack.start_job(), await stack.start_job()
    before = await stack.get(f"/api/jobs/{job_id}")
    log = []
    for key in outside_the_jobs_prefix(job_id, other):
        if runpod_format:
            body = {"status": "COMPLETED", "id": "rp-x", "output": {"output_key": key}}
        else:
            body = {"status": "complete", "output_key": key}
        got, answer = await stack.callback(job_id, body)
        log.append((key, got, "output_key" in answer.get("error", "")))
    assert log == [(key, 400, True) for key in outside_the_jobs_prefix(job_id, other)]
    assert await stack.get(f"/api/jobs/{job_id}") == before
    got, answer = await stack.callback(
        job_id, {"status": "complete", "output_key": f"exports/{job_id}/clips/out.mp4"}
    )
    assert (got, answer["status"]) == (200, "complete")


async def test_one_job_cannot_claim_another_jobs_output(stack: Stack) -> None:
    """The attack: complete my job with the victim's key, then download it as my own."""
    victim = await stack.start_job("victim")
    key = f"exports/{victim}/out.mp4"
    stack.s3.client().put_object(Bucket=BUCKET, Key=key, Body=b"the victim's video")
    assert (await stack.callback(victim, {"status": "complete", "output_key": key}))[0] == 200
    mine = await stack.start_job("attacker")

    got, _ = await stack.callback(mine, {"status": "complete", "output_key": key})
    webhook = {"status": "COMPLETED", "id": "rp-x", "output": {"output_key": key}}
    got_webhook, _ = await stack.callback(mine, webhook)
    download = await stack.get(f"/api/storage/presigned-url?key={quote(key, safe='')}", "attacker")

    assert (got, got_webhook, download[0]) == (400, 400, 404)
    _, job = await stack.get(f"/api/jobs/{mine}", "attacker")
    assert (job["status"], job["output_key"]) == ("processing", "")


async def test_a_callback_cannot_replace_the_recorded_runpod_id(stack: Stack) -> None:
    """Else whoever holds the callback URL points the owner's cancel at another RunPod job."""
    job_id = await stack.start_job()
    submission = await stack.runpod.next_submission()
    before = await stack.get(f"/api/jobs/{job_id}")
    got, answer = await stack.callback(job_id, {"status": "IN_PROGRESS", "id": "someone-elses"})
    assert (got, "external_id" in answer["error"]) == (409, True), answer
    assert await stack.get(f"/api/jobs/{job_id}") == before
    status, _ = await stack.post(f"/api/jobs/{job_id}/cancel")
    assert status == 200
    cancels = [path for _, path in stack.runpod.paths() if path.startswith("/cancel/")]
    assert cancels == [f"/cancel/{submission['id']}"]


async def test_callback_metrics_count_outcomes(stack: Stack) -> None:
    job_id = await stack.start_job()
    await stack.callback(job_id, {"status": "progress", "progress": 5})
    await stack.callback(job_id, {"status": "progress", "progress": 500})
    await stack.callback(job_id, {"status": "progress", "progress": 5}, "bad")
    async with stack.http.get(f"{stack.url}/metrics") as response:
        text = await response.text()
    assert 'gateway_callbacks_total{outcome="ok"} 1.0' in text
    assert 'gateway_callbacks_total{outcome="invalid"} 1.0' in text
    assert 'gateway_callbacks_total{outcome="unauthorized"} 1.0' in text
