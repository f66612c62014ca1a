"""The user's REST routes: start an export, read, list and cancel jobs, download outputs.

Every route needs `Authorization: Bearer <jwt>` (401), but a development download link, which
carries its own signature. Someone else's job is answered exactly like a job that does not
exist (404). The service's errors are answered by the app's middleware (`errors.SERVICE_ANSWERS`).
A start beyond the user's abuse limits is 429 with `Retry-After` before anything is created
(`limits.StartLimits`); handing the job to the worker is `submission.Submitter`'s.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urljoin

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.context import Services, services
from gateway.devstorage import LocalStorage
from gateway.disposition import attachment
from gateway.errors import BadRequest, NotFound
from gateway.translate import InvalidJSON, job_json, loads
from gateway.worker import WorkerError
from jobstate.client import InvalidArgument, Job, Status
from jobstate.client import NotFound as JobNotFound
from jobstate.wire import JOB_ID_RE, MAX_IDEMPOTENCY_KEY

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 100


async def owned_job(svc: Services, job_id: str, user_id: str) -> Job:
    """The job if it exists and belongs to `user_id`; NotFound otherwise (alike)."""
    if not JOB_ID_RE.fullmatch(job_id):
        raise NotFound("job not found")
    try:
        job = await svc.client.get_job(job_id)
    except (JobNotFound, InvalidArgument):
        raise NotFound("job not found") from None
    if job.user_id != user_id:
        raise NotFound("job not found")
    return job


async def read_json_object(request: web.Request) -> dict[str, Any]:
    body = await request.read()  # client_max_size answers 413 beyond the limit
    try:
        data = loads(body)
    except InvalidJSON as exc:
        raise BadRequest(f"body must be valid JSON: {exc}") from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("body must be valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data


async def start_export(request: web.Request) -> web.Response:
    svc = services(request)
    user_id = svc.users.user_of(request)
    params = await read_json_object(request)
    key = request.headers.get("Idempotency-Key", "")
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise BadRequest(f"Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY} characters")
    job = await svc.starts.create(
        user_id,
        key,
        lambda: svc.client.create_job(user_id, "overlay", params, idempotency_key=key),
    )
    job = await svc.submitter.ensure_submitted(job, params, svc.callback_url(job.job_id))
    if not job.status.terminal:
        svc.hub.expect(job.job_id)  # the page that started it watches it next
    return web.json_response({"job_id": job.job_id, "status": job.status.value})


async def get_job(request: web.Request) -> web.Response:
    svc = services(request)
    user_id = svc.users.user_of(request)
    job = await owned_job(svc, request.match_info["job_id"], user_id)
    return web.json_response(job_json(job))


async def list_jobs(request: web.Request) -> web.Response:
    svc = services(request)
    user_id = svc.users.user_of(request)
    raw_size = request.query.get("page_size", "20")
    if not raw_size.isdigit() or not 1 <= int(raw_size) <= MAX_PAGE_SIZE:
        raise BadRequest(f"page_size must be an integer between 1 and {MAX_PAGE_SIZE}")
    names = filter(None, request.query.get("status", "").split(","))
    try:
        statuses = [Status(name) for name in names]
    except ValueError:
        known = ", ".join(status.value for status in Status)
        raise BadRequest(f"status must be one of {known}") from None
    page = await svc.client.list_page(
        user_id,
        statuses=statuses,
        page_size=int(raw_size),
        page_token=request.query.get("page_token", ""),
    )
    return web.json_response(
        {"jobs": [job_json(job) for job in page.jobs], "next_page_token": page.next_page_token}
    )


async def cancel_job(request: web.Request) -> web.Response:
    svc = services(request)
    user_id = svc.users.user_of(request)
    job = await owned_job(svc, request.match_info["job_id"], user_id)
    already = job.status is Status.CANCELLED
    job = await svc.client.cancel_job(job.job_id, "cancelled by the user")
    # Only the cancel that changed the job calls RunPod, so repeats cannot spend the shared
    # key. Two cancels in the same instant may both call it; RunPod's cancel is idempotent.
    if job.external_id and not already:
        try:
            await svc.worker.cancel(job.external_id)
        except WorkerError as exc:  # the job is cancelled here either way; its callbacks get 409
            log.warning("cancelling %s at the worker failed: %s", job.job_id, exc)
    return web.json_response(job_json(job))


async def presigned_url(request: web.Request) -> web.Response:
    svc = services(request)
    user_id = svc.users.user_of(request)
    key = request.query.get("key", "")
    if not key:
        raise BadRequest("key is required")
    # The contract's output_url carries only the key: the caller owns it if one of their
    # complete jobs has exactly that output_key (the service filters; one call, one row).
    page = await svc.client.list_page(
        user_id, statuses=[Status.COMPLETE], output_key=key, page_size=1
    )
    if not page.jobs:
        raise NotFound("no complete job of yours has that output")
    url = urljoin(f"{svc.public_url}/", svc.storage.presign(key))
    return web.json_response({"url": url, "expires_in": svc.storage.expires_in})


def local_outputs(storage: LocalStorage) -> Handler:
    """`GET /api/dev/outputs/{key}?expires=&sig=`: the download behind a development link."""

    async def serve(request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        path = storage.check(key, request.query.get("expires", ""), request.query.get("sig", ""))
        if not path.is_file():
            raise NotFound("no such output")
        # The same header R2 sends for a presigned URL (`r2.R2Storage.presign`).
        return web.FileResponse(path, headers={"Content-Disposition": attachment(key)})

    return serve


async def dev_token(request: web.Request) -> web.Response:
    """Development only: mint a user token (the route does not exist in production)."""
    svc = services(request)
    user_id = request.query.get("user_id", "")
    if not user_id or len(user_id) > 256:
        raise BadRequest("user_id is required (at most 256 characters)")
    return web.json_response({"user_id": user_id, "token": svc.users.mint(user_id)})
