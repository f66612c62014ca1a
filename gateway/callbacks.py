"""`POST /api/jobs/{id}/do?token=T`: the worker's callbacks, in the seed's and RunPod's formats.

The token is checked before the body is read (401 changes nothing). A body is parsed into one
`Change` and applied with one RPC; the service makes repeats harmless (no new version) and
answers FAILED_PRECONDITION (409) for anything else after the job finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web

from gateway.auth import Unauthorized
from gateway.context import Services, services
from gateway.errors import BadRequest, GatewayError, NotFound
from gateway.jobs import read_json_object
from gateway.outputs import key_problem, output_prefix
from gateway.translate import STATUS_NAMES, http_error, is_number
from gateway.worker import is_external_id
from jobstate.v1 import jobstate_pb2 as pb
from jobstate.wire import JOB_ID_RE, MAX_ERROR


@dataclass(frozen=True, slots=True)
class Change:
    """What a callback asks for: an RPC name and its arguments."""

    rpc: str
    args: tuple[Any, ...]


def _text(body: dict[str, Any], name: str, default: str = "") -> str:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value


def _workers_error(text: str, default: str) -> str:
    """The worker's own message, kept for the user but cut to what a job holds."""
    return text.replace("\x00", "")[:MAX_ERROR] or default


def _output_key(value: Any, prefix: str, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{field} must be a non-empty string")
    problem = key_problem(value, prefix)
    if problem:
        raise BadRequest(f"{field} {problem}")
    return value


def parse(body: dict[str, Any], prefix: str) -> Change:
    """The change a callback body asks for; BadRequest naming the field otherwise.
    `prefix` is the job's own output_prefix: an output key must be inside it."""
    status = body.get("status")
    if not isinstance(status, str):
        raise BadRequest("status must be a string")
    if status == "progress":
        progress = body.get("progress")
        if not is_number(progress) or not 0 <= progress <= 100:
            raise BadRequest("progress must be a finite number between 0 and 100")
        return Change("report_progress", (float(progress), _text(body, "message")))
    if status == "complete":
        return Change("complete_job", (_output_key(body.get("output_key"), prefix, "output_key"),))
    if status == "error":
        return Change("fail_job", (_workers_error(_text(body, "error"), "the worker failed"),))
    return _parse_runpod(status, body, prefix)


def _runpod_id(body: dict[str, Any], *, required: bool) -> str:
    value = body.get("id")
    if value is None and not required:
        return ""
    if not is_external_id(value):
        raise BadRequest("id must be a RunPod job id ([A-Za-z0-9_-], at most 128 characters)")
    return str(value)


def _parse_runpod(status: str, body: dict[str, Any], prefix: str) -> Change:
    if status in ("IN_QUEUE", "IN_PROGRESS"):
        # Records the id when the job has none; a different recorded id is FAILED_PRECONDITION.
        return Change("mark_submitted", (_runpod_id(body, required=True),))
    _runpod_id(body, required=False)  # a webhook's id names nothing here, but must be plain
    if status == "COMPLETED":
        output = body.get("output")
        key = output.get("output_key") if isinstance(output, dict) else None
        if key is None:
            return Change("confirm_complete", ())
        return Change("complete_job", (_output_key(key, prefix, "output.output_key"),))
    if status == "FAILED":
        error = body.get("error")
        text = error if isinstance(error, str) else ""
        return Change("fail_job", (_workers_error(text, "the RunPod job failed"),))
    if status == "TIMED_OUT":
        return Change("fail_job", ("the RunPod job timed out",))
    if status == "CANCELLED":
        return Change("cancel_job", ("cancelled on RunPod",))
    raise BadRequest(f"unknown callback status {status!r}")


async def _apply(svc: Services, job_id: str, change: Change) -> pb.Job:
    if change.rpc == "confirm_complete":
        # COMPLETED without an output: harmless if the job already completed, else unusable.
        job = await svc.client.get_job(job_id)
        if job.status != pb.JOB_STATUS_COMPLETE:
            raise BadRequest("output.output_key is required")
        return job
    return await getattr(svc.client, change.rpc)(job_id, *change.args)


async def callback(request: web.Request) -> web.Response:
    svc = services(request)
    job_id = request.match_info["job_id"]
    outcome = "error"
    try:
        svc.callbacks.check(job_id, request.query.get("token", ""))
        if not JOB_ID_RE.fullmatch(job_id):
            raise NotFound("job not found")
        prefix = output_prefix(svc.config.output_prefix, job_id)
        change = parse(await read_json_object(request), prefix)
        job = await _apply(svc, job_id, change)
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
    except grpc.aio.AioRpcError as exc:
        status, _ = http_error(exc.code(), exc.details())
        outcome = {400: "invalid", 404: "not_found", 409: "conflict"}.get(status, "unavailable")
        raise
    finally:
        svc.metrics.callbacks.labels(outcome).inc()
    return web.json_response(
        {"job_id": job.job_id, "status": STATUS_NAMES[job.status], "version": job.version}
    )
