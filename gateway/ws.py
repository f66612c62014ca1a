"""`GET /api/jobs/{id}/ws?token=<jwt>[&after=<version>]`: one browser socket on one job.

Order of checks: a browser Origin outside GATEWAY_ALLOWED_ORIGINS is refused with 403 before
the upgrade; the token (close 4401) and the job's owner (close 4404, also for someone else's
job) are checked after it, then the socket caps (close 4429 beyond
GATEWAY_MAX_SOCKETS_PER_USER / _PER_JOB: a browser cannot read a refused upgrade's status, but
it can read a close code). Then the socket joins the job's shared stream (`watch.WatchHub`).
From the client only `{"type":"ping"}` means something (answered `{"type":"pong"}`, at most one
pending per socket); anything else up to 64 KiB a frame is ignored. Sockets are uncompressed
on purpose (permessage-deflate tripled CPU per push and grew each socket ~14x) and
heartbeated so dead peers are noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import WSMsgType, web

from gateway.auth import Unauthorized
from gateway.context import Services, services
from gateway.errors import CLOSE_NOT_FOUND, report
from gateway.limits import CLOSE_TOO_MANY
from gateway.outbox import CLOSE_TIMEOUT, Outbox
from gateway.translate import loads
from gateway.watch import Watcher
from jobstate.client import InvalidArgument, JobStateError
from jobstate.client import NotFound as JobNotFound
from jobstate.wire import JOB_ID_RE

log = logging.getLogger(__name__)

MAX_CLIENT_FRAME = 64 * 1024
CLOSE_UNAUTHORIZED = 4401
CLOSE_BAD_REQUEST = 4400
CLOSE_GOING_AWAY = 1001
MAX_VERSION = 2**64 - 1  # WatchJob's after_version is a uint64


def _parse_after(raw: str | None) -> int | None:
    """The `after` query value: a decimal uint64 (ValueError otherwise) or None when absent."""
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 20 or int(raw) > MAX_VERSION:
        raise ValueError(raw)
    return int(raw)


def _is_ping(data: str) -> bool:
    if len(data) > 256 or "ping" not in data:
        return False
    try:
        message = loads(data)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("type") == "ping"


@contextlib.asynccontextmanager
async def open_socket(
    request: web.Request,
) -> AsyncIterator[tuple[web.WebSocketResponse, Services]]:
    """The upgrade every socket route shares: Origin checked (403 before the upgrade), an
    uncompressed, heartbeated socket with a 64 KiB frame limit, counted and closed with 1001
    on shutdown while it is open."""
    svc = services(request)
    origin = request.headers.get("Origin")
    if origin is not None and origin not in svc.origins:
        raise web.HTTPForbidden(reason="origin not allowed")
    ws = web.WebSocketResponse(
        heartbeat=svc.config.ws_heartbeat,
        compress=False,
        max_msg_size=MAX_CLIENT_FRAME + 1,  # aiohttp refuses len >= max_msg_size
        timeout=5.0,
    )
    await ws.prepare(request)
    svc.sockets.add(ws)
    svc.metrics.sockets_open.inc()
    try:
        yield ws, svc
    finally:
        svc.sockets.discard(ws)
        svc.metrics.sockets_open.dec()


async def socket_user(request: web.Request, ws: web.WebSocketResponse, svc: Services) -> str | None:
    """The user of the socket's `?token=`; otherwise closes it with 4401 and gives None."""
    try:
        return svc.users.verify(request.query.get("token", ""))
    except Unauthorized as exc:
        await ws.close(code=CLOSE_UNAUTHORIZED, message=str(exc).encode())
        return None


async def job_socket(request: web.Request) -> web.StreamResponse:
    async with open_socket(request) as (ws, svc):
        admitted = await _admit(request, ws, svc)
        if admitted is not None:
            user_id, job_id, after = admitted
            refused = svc.slots.acquire(user_id, job_id)
            if refused is not None:
                await ws.close(code=CLOSE_TOO_MANY, message=refused.encode())
            else:
                try:
                    await _serve(ws, Outbox(ws, svc.metrics, request.transport), svc, job_id, after)
                finally:
                    svc.slots.release(user_id, job_id)
    return ws


async def _admit(
    request: web.Request, ws: web.WebSocketResponse, svc: Services
) -> tuple[str, str, int | None] | None:
    """(user_id, job_id, after) for the job's owner; otherwise closes the socket with a code."""
    user_id = await socket_user(request, ws, svc)
    if user_id is None:
        return None
    job_id = request.match_info["job_id"]
    try:
        after = _parse_after(request.query.get("after"))
    except ValueError:
        message = b"after must be a version number (0 to 2^64-1)"
        await ws.close(code=CLOSE_BAD_REQUEST, message=message)
        return None
    if not JOB_ID_RE.fullmatch(job_id):
        await ws.close(code=CLOSE_NOT_FOUND, message=b"job not found")
        return None
    try:
        owner = await svc.owners.owner(job_id)
    except (JobNotFound, InvalidArgument):
        await ws.close(code=CLOSE_NOT_FOUND, message=b"job not found")
        return None
    except JobStateError as exc:
        answer = report(f"socket of {job_id}", exc)
        await ws.close(code=answer.close_code, message=answer.reason.encode())
        return None
    if owner != user_id:
        await ws.close(code=CLOSE_NOT_FOUND, message=b"job not found")
        return None
    return user_id, job_id, after


async def _serve(
    ws: web.WebSocketResponse, outbox: Outbox, svc: Services, job_id: str, after: int | None
) -> None:
    """Join the job's shared stream and answer pings until the socket closes."""
    watcher = Watcher(outbox, after)
    svc.hub.join(job_id, watcher, after)
    try:
        async for message in ws:
            svc.metrics.messages_received.inc()
            if message.type is WSMsgType.TEXT and _is_ping(message.data):
                outbox.pong()
            # Everything else (other text, binary) is ignored on purpose.
    finally:
        svc.hub.leave(job_id, watcher)
        await outbox.aclose()


async def close_all_sockets(svc: Services) -> None:
    """on_shutdown: every open socket gets 1001 so clients reconnect with `after`. A peer that
    does not read cannot take the close frame: after CLOSE_TIMEOUT its close is given up
    (aiohttp then closes the transport), so it cannot hold up the shutdown."""
    sockets = list(svc.sockets)
    await asyncio.gather(*(_going_away(ws) for ws in sockets), return_exceptions=True)


async def _going_away(ws: web.WebSocketResponse) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await ws.close(code=CLOSE_GOING_AWAY, message=b"server shutting down")
