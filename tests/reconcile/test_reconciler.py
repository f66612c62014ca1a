"""The reconciler against a real jobstate server and a fake RunPod, both on loopback.

"Stale" is decided by `stale_after`: 0 makes every unfinished job a candidate, an hour makes
none; the hard deadline is moved the same way, so nothing here waits for time to pass.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from support.fakerunpod import FakeRunPod
from support.poll import eventually

from gateway.metrics import Metrics
from gateway.reconcile import Reconciler
from gateway.runpod import RunPodClient
from gateway.verdicts import NEVER_SUBMITTED
from jobstate.client import Job, JobStateClient, Status, Unavailable
from jobstate.server import RunningServer

from .conftest import API_KEY

HOUR = 3600.0


async def submitted(client: JobStateClient, external_id: str, progress: float = 0) -> Job:
    job = await client.create_job("u1", "overlay", {"fps": 30})
    job = await client.mark_submitted(job.job_id, external_id)
    if progress:
        job = await client.report_progress(job.job_id, progress, "rendering")
    return job


def reconciler(client: JobStateClient, runpod: Any, **kw: Any) -> Reconciler:
    kw.setdefault("stale_after", 0)
    kw.setdefault("hard_deadline", HOUR)
    return Reconciler(client, runpod, **kw)


COMPLETED = {"status": "COMPLETED", "output": {"output_key": "exports/{job}/a.mp4"}}


def for_job(value: Any, job_id: str) -> Any:
    """`value` with every "{job}" replaced by `job_id` (answers name the job's own prefix)."""
    return json.loads(json.dumps(value).replace("{job}", job_id))


def outside(problem: str) -> str:
    return f"RunPod reports an output key that {problem}; it was not accepted"


# RunPod's answer -> (status of the job afterwards, its error/output_key, summary outcome)
CASES = [
    pytest.param(
        (200, COMPLETED), Status.COMPLETE, "exports/{job}/a.mp4", "completed", id="completed"
    ),
    pytest.param(
        (200, {"status": "COMPLETED", "output": {"output_key": "secrets/a.mp4"}}),
        Status.ERROR,
        outside("is not inside 'exports/{job}/'"),
        "failed",
        id="completed-outside-prefix",
    ),
    pytest.param(
        (200, {"status": "COMPLETED", "output": {"output_key": "exports/another-job/a.mp4"}}),
        Status.ERROR,
        outside("is not inside 'exports/{job}/'"),
        "failed",
        id="completed-with-another-jobs-output",
    ),
    pytest.param(
        (200, {"status": "COMPLETED", "output": {"output_key": "exports/{job}/../x/a.mp4"}}),
        Status.ERROR,
        outside("has an empty, '.' or '..' path segment"),
        "failed",
        id="completed-with-traversal",
    ),
    pytest.param(
        (200, {"status": "COMPLETED", "output": "done"}),
        Status.ERROR,
        "RunPod reports the job completed without an output_key",
        "failed",
        id="completed-without-key",
    ),
    pytest.param(  # RunPod's /status text goes to the log, not to the user
        (200, {"status": "FAILED", "error": "ffmpeg exited 1"}),
        Status.ERROR,
        "the RunPod job failed",
        "failed",
        id="failed",
    ),
    pytest.param(
        (200, {"status": "COMPLETED", "output": {"output_key": "exports/{job}/" + "k" * 1100}}),
        Status.ERROR,
        outside("is longer than 1024 characters"),
        "failed",
        id="completed-key-too-long",
    ),
    pytest.param(
        (200, {"status": "FAILED", "error": "bad\x00frame <script> " + "e" * 5000}),
        Status.ERROR,
        "the RunPod job failed",
        "failed",
        id="failed-with-hostile-reason",
    ),
    pytest.param(
        (200, {"status": "FAILED"}),
        Status.ERROR,
        "the RunPod job failed",
        "failed",
        id="failed-without-reason",
    ),
    pytest.param(
        (200, {"status": "TIMED_OUT"}),
        Status.ERROR,
        "the RunPod job timed out",
        "failed",
        id="timed-out",
    ),
    pytest.param(
        (200, {"status": "CANCELLED"}),
        Status.CANCELLED,
        "cancelled on RunPod",
        "cancelled",
        id="cancelled",
    ),
    pytest.param(
        (404, {"error": "request does not exist"}),
        Status.ERROR,
        "the GPU worker stopped reporting: RunPod no longer knows this job",
        "failed",
        id="unknown-to-runpod",
    ),
]


@pytest.mark.parametrize(("answer", "status", "detail", "outcome"), CASES)
async def test_applies_what_runpod_knows(
    client: JobStateClient,
    fake_runpod: FakeRunPod,
    runpod: RunPodClient,
    answer: tuple[int, Any],
    status: Status,
    detail: str,
    outcome: str,
) -> None:
    job = await submitted(client, "rp-1", progress=40)
    fake_runpod.jobs["rp-1"] = for_job(answer, job.job_id)

    summary = await reconciler(client, runpod).run_once()

    after = await client.get_job(job.job_id)
    assert (after.status, after.output_key or after.error, after.version) == (
        status,
        for_job(detail, job.job_id),
        job.version + 1,
    )
    assert summary == {"examined": 1, outcome: 1}
    assert fake_runpod.calls() == [("GET", "/status/rp-1", f"Bearer {API_KEY}")]


@pytest.mark.parametrize("runpod_status", ["IN_QUEUE", "IN_PROGRESS", "SOMETHING_NEW"])
async def test_running_jobs_are_left_and_looked_at_again(
    client: JobStateClient, fake_runpod: FakeRunPod, runpod: RunPodClient, runpod_status: str
) -> None:
    job = await submitted(client, "rp-1", progress=10)
    fake_runpod.jobs["rp-1"] = (200, {"status": runpod_status})
    rec = reconciler(client, runpod)

    assert await rec.run_once() == {"examined": 1, "left": 1}
    assert (await client.get_job(job.job_id)).version == job.version

    fake_runpod.jobs["rp-1"] = (200, for_job(COMPLETED, job.job_id))
    assert await rec.run_once() == {"examined": 1, "completed": 1}
    assert (await client.get_job(job.job_id)).status == Status.COMPLETE


async def test_fresh_and_finished_jobs_are_not_touched(
    client: JobStateClient, fake_runpod: FakeRunPod, runpod: RunPodClient
) -> None:
    fresh = await submitted(client, "rp-fresh", progress=5)
    fake_runpod.jobs["rp-fresh"] = (200, {"status": "FAILED"})
    assert (
        await reconciler(client, runpod, stale_after=HOUR, hard_deadline=2 * HOUR).run_once() == {}
    )

    done = await submitted(client, "rp-done")
    await client.complete_job(done.job_id, "exports/done.mp4")
    fake_runpod.jobs["rp-done"] = (200, {"status": "FAILED"})
    summary = await reconciler(client, runpod).run_once()

    assert summary == {"examined": 1, "failed": 1}  # only the unfinished one
    assert fake_runpod.calls() == [("GET", "/status/rp-fresh", f"Bearer {API_KEY}")]
    assert (await client.get_job(done.job_id)).status == Status.COMPLETE
    assert (await client.get_job(fresh.job_id)).status == Status.ERROR


async def test_pending_job_never_submitted_fails_without_asking_runpod(
    client: JobStateClient, fake_runpod: FakeRunPod, runpod: RunPodClient
) -> None:
    job = await client.create_job("u1", "overlay", {})

    assert await reconciler(client, runpod).run_once() == {"examined": 1, "failed": 1}
    after = await client.get_job(job.job_id)
    assert (after.status, after.error) == (Status.ERROR, NEVER_SUBMITTED)
    assert fake_runpod.calls() == []


async def test_past_the_hard_deadline_fails_and_cancels_on_runpod(
    client: JobStateClient, fake_runpod: FakeRunPod, runpod: RunPodClient
) -> None:
    job = await submitted(client, "rp-1", progress=90)
    fake_runpod.jobs["rp-1"] = (200, {"status": "IN_PROGRESS"})

    summary = await reconciler(client, runpod, stale_after=0, hard_deadline=0.001).run_once()

    after = await client.get_job(job.job_id)
    assert summary == {"examined": 1, "failed": 1}
    assert after.status == Status.ERROR
    assert after.error.startswith("the GPU worker stopped reporting")
    assert fake_runpod.cancelled == ["rp-1"]


async def test_completed_on_runpod_wins_over_the_deadline(
    client: JobStateClient, fake_runpod: FakeRunPod, runpod: RunPodClient
) -> None:
    job = await submitted(client, "rp-1")
    fake_runpod.jobs["rp-1"] = (200, for_job(COMPLETED, job.job_id))

    await reconciler(client, runpod, stale_after=0, hard_deadline=0.001).run_once()

    assert (await client.get_job(job.job_id)).status == Status.COMPLETE
    assert fake_runpod.cancelled == []


@pytest.mark.parametrize(
    "answer", [(500, "upstream broke"), (401, {"error": "bad key"}), (200, "not json")]
)
async def test_runpod_trouble_leaves_the_job(
    client: JobStateClient, fake_runpod: FakeRunPod, runpod: RunPodClient, answer: Any
) -> None:
    job = await submitted(client, "rp-1", progress=20)
    fake_runpod.jobs["rp-1"] = answer

    assert await reconciler(client, runpod).run_once() == {"examined": 1, "left": 1}
    assert (await client.get_job(job.job_id)).version == job.version


async def test_runpod_unreachable_leaves_the_job(client: JobStateClient) -> None:
    job = await submitted(client, "rp-1")
    unreachable = RunPodClient("http://127.0.0.1:9", API_KEY, timeout=2, metrics=Metrics())
    try:
        assert await reconciler(client, unreachable).run_once() == {"examined": 1, "left": 1}
    finally:
        await unreachable.close()
    assert (await client.get_job(job.job_id)).version == job.version


async def test_without_runpod_only_deadline_and_never_submitted_apply(
    client: JobStateClient,
) -> None:
    pending = await client.create_job("u1", "overlay", {})
    quiet = await submitted(client, "sim-1", progress=30)

    assert await reconciler(client, None).run_once() == {"examined": 2, "failed": 1, "left": 1}
    assert (await client.get_job(pending.job_id)).status == Status.ERROR
    assert (await client.get_job(quiet.job_id)).version == quiet.version

    await reconciler(client, None, hard_deadline=0.001).run_once()
    assert (await client.get_job(quiet.job_id)).status == Status.ERROR


async def test_every_page_is_settled(
    client: JobStateClient, fake_runpod: FakeRunPod, runpod: RunPodClient
) -> None:
    jobs = [await submitted(client, f"rp-{i}") for i in range(7)]
    for i in range(7):
        fake_runpod.jobs[f"rp-{i}"] = (200, {"status": "CANCELLED"})

    summary = await reconciler(client, runpod, page_size=3).run_once()

    assert summary == {"examined": 7, "cancelled": 7}
    statuses = {(await client.get_job(j.job_id)).status for j in jobs}
    assert statuses == {Status.CANCELLED}


async def test_several_reconcilers_at_once_are_harmless(
    server: RunningServer, client: JobStateClient, fake_runpod: FakeRunPod
) -> None:
    jobs = [await submitted(client, f"rp-{i}", progress=10) for i in range(12)]
    for i in range(12):
        answer = [COMPLETED, {"status": "FAILED"}, {"status": "CANCELLED"}][i % 3]
        fake_runpod.jobs[f"rp-{i}"] = (200, for_job(answer, jobs[i].job_id))
    clients = [JobStateClient(f"127.0.0.1:{server.port}") for _ in range(4)]
    runpods = [RunPodClient(fake_runpod.url, API_KEY, 5, Metrics()) for _ in range(4)]
    try:
        summaries = await asyncio.gather(
            *(reconciler(c, r).run_once() for c, r in zip(clients, runpods, strict=True))
        )
    finally:
        for c, r in zip(clients, runpods, strict=True):
            await c.close()
            await r.close()

    assert [s["errors"] for s in summaries] == [0, 0, 0, 0]
    for job in jobs:
        after = await client.get_job(job.job_id)
        assert after.version == job.version + 1  # one terminal event, whoever won


async def test_a_worker_that_reports_again_is_not_failed_for_silence(
    client: JobStateClient, fake_runpod: FakeRunPod, runpod: RunPodClient
) -> None:
    """A 404 (or deadline) verdict is re-checked against the job's version before FailJob."""
    job = await submitted(client, "rp-1", progress=10)

    async def reports_while_asked() -> None:
        await client.report_progress(job.job_id, 50, "still here")

    fake_runpod.before_status = reports_while_asked  # then 404: unknown
    summary = await reconciler(client, runpod).run_once()
    assert summary == {"examined": 1, "raced": 1}
    assert (await client.get_job(job.job_id)).status == Status.PROCESSING


async def test_service_down_is_an_rpc_error_not_a_crash(fake_runpod: FakeRunPod) -> None:
    client = JobStateClient("127.0.0.1:9", timeout=1)
    try:
        with pytest.raises(Unavailable):  # DeadlineExceeded is one
            await reconciler(client, None).run_once()
    finally:
        await client.close()


async def test_a_job_finished_meanwhile_is_a_race_not_an_error(
    client: JobStateClient, fake_runpod: FakeRunPod, runpod: RunPodClient
) -> None:
    """RunPod says FAILED, but the worker's completion landed first: FAILED_PRECONDITION from
    the service is expected, counted as `raced`, and the completed job stays complete."""
    job = await submitted(client, "rp-1", progress=99)
    fake_runpod.jobs["rp-1"] = (200, {"status": "FAILED", "error": "late news"})

    async def completes_while_asked() -> None:
        await client.complete_job(job.job_id, "exports/u1/first.mp4")

    fake_runpod.before_status = completes_while_asked
    summary = await reconciler(client, runpod).run_once()
    after = await client.get_job(job.job_id)
    assert summary == {"examined": 1, "raced": 1}
    assert (after.status, after.output_key) == (Status.COMPLETE, "exports/u1/first.mp4")


async def test_the_loop_survives_a_failed_round_and_stops_when_told(
    client: JobStateClient, fake_runpod: FakeRunPod, caplog: pytest.LogCaptureFixture
) -> None:
    job = await submitted(client, "rp-1")
    fake_runpod.jobs["rp-1"] = (200, for_job(COMPLETED, job.job_id))

    class BrokenOnce(RunPodClient):
        calls = 0

        async def status(self, external_id: str) -> dict[str, Any]:
            BrokenOnce.calls += 1
            if BrokenOnce.calls == 1:
                raise RuntimeError("a bug in the first round")
            return await super().status(external_id)

    runpod = BrokenOnce(fake_runpod.url, API_KEY, 5, Metrics())
    stop = asyncio.Event()
    loop = asyncio.create_task(reconciler(client, runpod).run(0.05, stop))
    try:

        async def completed() -> bool:
            return (await client.get_job(job.job_id)).status == Status.COMPLETE

        await eventually(completed, what="a later round to complete the job")
        stop.set()
        await asyncio.wait_for(loop, 10)
    finally:
        stop.set()
        await asyncio.gather(loop, return_exceptions=True)
        await runpod.close()
    assert BrokenOnce.calls >= 2
    assert any("reconcile round failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("external_id", ["..", "../run", "a b", "x" * 129])
async def test_an_external_id_that_is_not_a_runpod_id_never_reaches_runpod(
    client: JobStateClient, fake_runpod: FakeRunPod, runpod: RunPodClient, external_id: str
) -> None:
    """A job recorded before ids were checked: no RunPod URL is built from its id."""
    job = await submitted(client, external_id, progress=10)

    assert await reconciler(client, runpod).run_once() == {"examined": 1, "left": 1}
    summary = await reconciler(client, runpod, hard_deadline=0.001).run_once()

    assert summary == {"examined": 1, "failed": 1}
    assert (await client.get_job(job.job_id)).status == Status.ERROR
    assert fake_runpod.calls() == []


async def test_runpods_failure_text_is_logged_not_shown(
    client: JobStateClient,
    fake_runpod: FakeRunPod,
    runpod: RunPodClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="gateway.reconcile")
    job = await submitted(client, "rp-1", progress=40)
    fake_runpod.jobs["rp-1"] = (200, {"status": "FAILED", "error": "ffmpeg exited 1"})

    assert await reconciler(client, runpod).run_once() == {"examined": 1, "failed": 1}

    assert (await client.get_job(job.job_id)).error == "the RunPod job failed"
    assert any("ffmpeg exited 1" in record.getMessage() for record in caplog.records)
