"""The aiohttp application: routes, JSON errors everywhere, CORS, health, metrics, demo page.

`make_services(config)` builds what the handlers share (call it inside the running loop: it
opens the service's client); `build_app(services)` wires routes and middlewares. The service's
errors are answered by `json_errors` through the one table in `errors`. Shutdown closes every
socket with 1001, then the watch streams (per job and per user), the worker and the client,
in that order.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway import callbacks, devstorage, jobs, mux, ws
from gateway.auth import CallbackAuth, UserAuth
from gateway.config import GatewayConfig
from gateway.context import SERVICES, Services, services
from gateway.errors import GatewayError, error_text, report
from gateway.limits import SocketSlots, StartLimits
from gateway.metrics import CONTENT_TYPE_LATEST, Metrics
from gateway.runpod import RunPodClient
from gateway.simworker import SimulatedWorker
from gateway.storage import create_storage
from gateway.submission import Submitter
from gateway.upstream import authorised, connect
from gateway.userfeed import UserFeeds
from gateway.watch import WatchHub
from gateway.worker import Worker
from jobstate.client import JobStateError

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY = 64 * 1024
PLACEHOLDER = "<!doctype html><title>jobstate</title><p>jobstate gateway is running.</p>\n"
CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key"


def make_services(config: GatewayConfig) -> Services:
    metrics = Metrics()
    # Callbacks arrive concurrently from many workers: their changes share calls.
    client = connect(config, metrics, batch_changes=True)
    storage = create_storage(config)
    worker: Worker
    if config.runpod_endpoint_url:
        worker = RunPodClient(
            config.runpod_endpoint_url, config.runpod_api_key, config.runpod_timeout, metrics
        )
    else:
        worker = SimulatedWorker(storage, config.sim_step_seconds)
    return Services(
        config=config,
        metrics=metrics,
        client=client,
        users=UserAuth(config.jwt_secret, audience=config.jwt_audience, issuer=config.jwt_issuer),
        callbacks=CallbackAuth(config.callback_secret),
        hub=WatchHub(client, metrics),
        feeds=UserFeeds(client),
        storage=storage,
        worker=worker,
        starts=StartLimits(
            client,
            max_unfinished=config.max_unfinished_jobs_per_user,
            max_per_minute=config.max_starts_per_minute,
        ),
        submitter=Submitter(client, worker, config.output_prefix),
        slots=SocketSlots(
            max_per_user=config.max_sockets_per_user, max_per_job=config.max_sockets_per_job
        ),
    )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error is `{"error": ...}`, aiohttp's own 404/405/413 included; never a trace."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        if exc.status == 413:
            return _error(413, f"request body too large (limit {MAX_BODY} bytes)")
        return _error(exc.status, (exc.reason or "error").lower(), headers)
    except GatewayError as exc:
        body = {"error": str(exc), **exc.fields}
        return web.json_response(body, status=exc.status, headers=exc.headers())
    except JobStateError as exc:
        answer = report(f"{request.method} {request.path}", exc)
        return _error(answer.status, error_text(exc))
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return _error(500, "internal error")


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """GATEWAY_ALLOWED_ORIGINS governs CORS on the REST routes."""
    origin = request.headers.get("Origin")
    allowed = origin is not None and origin in services(request).origins
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        if not allowed:
            return _error(403, "origin not allowed")
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin or "",
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": CORS_HEADERS,
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            },
        )
    response = await handler(request)
    if allowed and not response.prepared:
        response.headers["Access-Control-Allow-Origin"] = origin or ""
        response.headers["Vary"] = "Origin"
    return response


async def healthz(request: web.Request) -> web.Response:
    """200 only when an authenticated call to jobstate works (`upstream.authorised`)."""
    if await authorised(services(request).client):
        return web.json_response({"status": "ok"})
    return _error(503, "the jobstate service is unreachable or refuses this gateway")


async def metrics(request: web.Request) -> web.Response:
    body = services(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def index(request: web.Request) -> web.StreamResponse:
    page = STATIC_DIR / "index.html"
    if page.is_file():
        return web.FileResponse(page, headers={"Cache-Control": "no-cache"})
    return web.Response(text=PLACEHOLDER, content_type="text/html")


async def _on_shutdown(app: web.Application) -> None:
    await ws.close_all_sockets(app[SERVICES])


async def _on_cleanup(app: web.Application) -> None:
    svc = app[SERVICES]
    await svc.hub.close()
    await svc.feeds.close()
    await svc.submitter.close()
    await svc.worker.close()
    await svc.client.close()


def build_app(svc: Services) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[cors, json_errors])
    app[SERVICES] = svc
    app.router.add_post("/api/export/overlay/start", jobs.start_export)
    app.router.add_get("/api/jobs", jobs.list_jobs)
    app.router.add_get("/api/jobs/{job_id}", jobs.get_job)
    app.router.add_post("/api/jobs/{job_id}/cancel", jobs.cancel_job)
    app.router.add_get("/api/jobs/{job_id}/ws", ws.job_socket)
    app.router.add_get("/api/ws", mux.mux_socket)
    app.router.add_post("/api/jobs/{job_id}/do", callbacks.callback)
    app.router.add_get("/api/storage/presigned-url", jobs.presigned_url)
    if svc.config.development:
        app.router.add_get("/api/dev/token", jobs.dev_token)
    if isinstance(svc.storage, devstorage.LocalStorage):  # decided once, by create_storage
        app.router.add_get(devstorage.ROUTE + "{key:.+}", jobs.local_outputs(svc.storage))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", index)
    if STATIC_DIR.is_dir():
        app.router.add_static("/static/", STATIC_DIR)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app
