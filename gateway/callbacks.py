"""`POST /api/jobs/{id}/do?token=T`: the worker's callbacks, in the seed's and RunPod's formats.

The token is checked before the body is read (401 changes nothing). A body is parsed into one
`jobstate.domain` change (or the confirmation that a job completed) and applied with one call;
the service makes repeats harmless (no new version) and answers FailedPrecondition (409) for
anything else after the job finished. RunPod's statuses are read by `runpodstatus`, as the
reconciler reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.auth import Unauthorized
from gateway.changes import apply_change
from gateway.context import Services, services
from gateway.errors import BadRequest, GatewayError, NotFound, service_answer
from gateway.jobs import read_json_object
from gateway.outputs import key_problem, output_prefix
from gateway.runpodstatus import (
    Failed,
    Finished,
    NoOutput,
    RefusedOutput,
    Running,
    UnknownStatus,
    Unreadable,
    read_status,
)
from gateway.translate import is_number
from jobstate.client import Job, JobStateError, Status
from jobstate.domain import Change, Complete, Fail, Progress, Submit
from jobstate.wire import JOB_ID_RE, MAX_ERROR

RUNPOD_FAILED = "the RunPod job failed"


@dataclass(frozen=True, slots=True)
class ConfirmComplete:
    """RunPod's COMPLETED webhook without an output: harmless if the job already completed."""


Callback = Change | ConfirmComplete


def _text(body: dict[str, Any], name: str, default: str = "") -> str:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value


def _output_key(value: Any, prefix: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest("output_key must be a non-empty string")
    problem = key_problem(value, prefix)
    if problem:
        raise BadRequest(f"output_key {problem}")
    return value


def parse(body: dict[str, Any], prefix: str) -> Callback:
    """What a callback body asks for; BadRequest naming the field otherwise. `prefix` is the
    job's own output_prefix: an output key must be inside it."""
    status = body.get("status")
    if status == "progress":
        progress = body.get("progress")
        if not is_number(progress) or not 0 <= progress <= 100:
            raise BadRequest("progress must be a finite number between 0 and 100")
        return Progress(float(progress), _text(body, "message"))
    if status == "complete":
        return Complete(_output_key(body.get("output_key"), prefix))
    if status == "error":
        error = _text(body, "error").replace("\x00", "")[:MAX_ERROR]
        return Fail(error or "the worker failed")
    return _parse_runpod(body, prefix)


def _parse_runpod(body: dict[str, Any], prefix: str) -> Callback:
    try:
        reading = read_status(body, prefix)
    except Unreadable as exc:
        raise BadRequest(str(exc)) from None
    match reading:
        case Running(external_id):
            # Records the id when the job has none; a different recorded id is 409.
            if not external_id:
                raise BadRequest("id is required with IN_QUEUE and IN_PROGRESS")
            return Submit(external_id)
        case Finished(change):
            return change
        case Failed(error):
            return Fail(error or RUNPOD_FAILED)
        case NoOutput():
            return ConfirmComplete()
        case RefusedOutput(problem):
            raise BadRequest(f"output.output_key {problem}")
        case UnknownStatus(status):
            raise BadRequest(f"unknown callback status {status!r}")


async def _apply(svc: Services, job_id: str, callback: Callback) -> Job:
    if isinstance(callback, ConfirmComplete):
        job = await svc.client.get_job(job_id)
        if job.status is not Status.COMPLETE:  # then the webhook is unusable
            raise BadRequest("output.output_key is required")
        return job
    return await apply_change(svc.client, job_id, callback)


async def callback(request: web.Request) -> web.Response:
    svc = services(request)
    job_id = request.match_info["job_id"]
    outcome = "error"
    try:
        svc.callbacks.check(job_id, request.query.get("token", ""))
        if not JOB_ID_RE.fullmatch(job_id):
            raise NotFound("job not found")
        prefix = output_prefix(svc.config.output_prefix, job_id)
        job = await _apply(svc, job_id, parse(await read_json_object(request), prefix))
        outcome = "ok"
    except Unauthorized:
        outcome = "unauthorized"
        raise
    except GatewayError as exc:
        outcome = {400: "invalid", 404: "not_found"}.get(exc.status, "error")
        raise
    except web.HTTPRequestEntityTooLarge:
        outcome = "too_large"
        raise
    except JobStateError as exc:
        status = service_answer(exc).status
        outcome = {400: "invalid", 404: "not_found", 409: "conflict"}.get(status, "unavailable")
        raise
    finally:
        svc.metrics.callbacks.labels(outcome).inc()
    return web.json_response(
        {"job_id": job.job_id, "status": job.status.value, "version": job.version}
    )
