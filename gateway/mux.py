"""`GET /api/ws?token=<jwt>`: one socket per page, any number of jobs on it (`muxproto`).

Admission is the single-job socket's (`ws.open_socket`, `ws.socket_user`): a browser Origin outside
GATEWAY_ALLOWED_ORIGINS is 403 before the upgrade, a bad token closes 4401 after it, and the
socket takes one of the user's socket slots (4429 beyond). Then each `subscribe` is checked
on its own: a job that does not exist or is someone else's, an ill-formed id, a job at its
socket cap (4429), this socket at GATEWAY_MAX_SUBSCRIPTIONS_PER_SOCKET (4429) or the service
at its stream cap (1013) is a `subscription_error` with that close code, and the socket and
its other subscriptions go on. An accepted subscription is acknowledged (`subscribed`) before
its first event and joins the job's shared stream (`watch.WatchHub`) like a single-job socket:
a `status` first (or, with `after`, every event newer than it), versions strictly increasing,
latest-wins for this job's progress only when the socket falls behind (`outbox`), and the
job's terminal event is the subscription's last message. Subscribing to a job already
subscribed on this socket changes nothing but is acknowledged again; `unsubscribe` is always
acknowledged, after whatever of that job was already queued.

`{"type":"subscribe","jobs":"mine"}` subscribes the user's feed (`userfeed`): acknowledged,
then one `jobs` message listing the user's jobs, then every event of any of them, new jobs
included. A job followed both ways arrives twice, once per subscription (the browser client
tells its handlers apart by version).

Client messages are read one at a time, so a subscription's checks (the job's owner from
`owners`: from the job's stream, started for the asking when not followed yet) finish before
the next message is looked at. A frame that is not a protocol message (not JSON, not an
object, an unknown type, an ill-typed field, a binary frame) closes the socket with 4400 and
says why; a frame over 64 KiB closes it with 1009.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from gateway import muxproto
from gateway.context import Services
from gateway.errors import CLOSE_NOT_FOUND, report
from gateway.limits import CLOSE_TOO_MANY
from gateway.outbox import CLOSE_TIMEOUT, Outbox
from gateway.translate import dumps
from gateway.userfeed import FeedSubscriber
from gateway.watch import Watcher
from gateway.ws import CLOSE_BAD_REQUEST, open_socket, socket_user
from jobstate.client import InvalidArgument, JobStateError
from jobstate.client import NotFound as JobNotFound
from jobstate.wire import JOB_ID_RE


class Subscription(Watcher):
    """One job on a multiplexed socket: a watcher whose end ends only the subscription."""

    __slots__ = ("job_id", "socket")

    def __init__(self, socket: MuxSocket, job_id: str, after: int | None) -> None:
        super().__init__(socket.outbox, after, key=job_id)
        self.socket = socket
        self.job_id = job_id

    def finish(self, code: int, reason: str = "") -> None:
        if self.done:
            return
        self.done = True
        if code != 1000:  # 1000: its terminal event, already sent, says it all
            self.outbox.push(dumps(muxproto.subscription_error(self.job_id, code, reason)))
        self.socket.ended(self)


class MuxSocket:
    """The subscriptions of one multiplexed socket; all of its methods run on the loop."""

    def __init__(self, svc: Services, outbox: Outbox, user_id: str) -> None:
        self.svc = svc
        self.outbox = outbox
        self.user_id = user_id
        self.subscriptions: dict[str, Subscription] = {}
        self.feed: FeedSubscriber | None = None
        self.closed = False

    def send(self, message: dict[str, object]) -> None:
        self.outbox.push(dumps(message))

    async def handle(self, request: muxproto.Request) -> None:
        match request:
            case muxproto.Ping():
                self.outbox.pong()
            case muxproto.Subscribe(job_id, after):
                await self.subscribe(job_id, after)
            case muxproto.Unsubscribe(job_id):
                self.unsubscribe(job_id)
            case muxproto.SubscribeFeed():
                self.subscribe_feed()
            case muxproto.UnsubscribeFeed():
                self.unsubscribe_feed()

    def subscribe_feed(self) -> None:
        if self.feed is None:
            feed = FeedSubscriber(self.outbox, lambda: self._feed_ended(feed))
            self.feed = feed
            self.send(muxproto.feed_subscribed())
            self.svc.feeds.join(self.user_id, feed)
        else:
            self.send(muxproto.feed_subscribed())

    def unsubscribe_feed(self) -> None:
        if self.feed is not None:
            self.svc.feeds.leave(self.user_id, self.feed)
            self.feed = None
        self.send(muxproto.feed_unsubscribed())

    def _feed_ended(self, feed: FeedSubscriber) -> None:
        """The feed failed for good (its error was sent); a later subscribe starts anew."""

        def drop() -> None:
            if self.feed is feed:
                self.svc.feeds.leave(self.user_id, feed)
                self.feed = None

        asyncio.get_running_loop().call_soon(drop)

    async def subscribe(self, job_id: str, after: int | None) -> None:
        if job_id in self.subscriptions:
            self.send(muxproto.subscribed(job_id))
            return
        refused = await self._refusal(job_id)
        if self.closed:
            return
        if refused is None:
            taken = self.svc.slots.acquire_job(job_id)
            refused = None if taken is None else (CLOSE_TOO_MANY, taken)
        if refused is not None:
            code, reason = refused
            self.send(muxproto.subscription_error(job_id, code, reason))
            return
        subscription = Subscription(self, job_id, after)
        self.subscriptions[job_id] = subscription
        self.send(muxproto.subscribed(job_id))
        self.svc.hub.join(job_id, subscription, after)

    async def _refusal(self, job_id: str) -> tuple[int, str] | None:
        """Why `job_id` cannot be subscribed (a close code and its reason), or None."""
        limit = self.svc.config.max_subscriptions_per_socket
        if len(self.subscriptions) >= limit:
            return CLOSE_TOO_MANY, f"too many subscriptions on this socket (limit {limit})"
        if not JOB_ID_RE.fullmatch(job_id):
            return CLOSE_NOT_FOUND, "job not found"
        try:
            owner = await self.svc.owners.owner(job_id)
        except (JobNotFound, InvalidArgument):
            return CLOSE_NOT_FOUND, "job not found"
        except JobStateError as exc:
            answer = report(f"subscription to {job_id}", exc)
            return answer.close_code, answer.reason
        if owner != self.user_id:
            return CLOSE_NOT_FOUND, "job not found"
        return None

    def unsubscribe(self, job_id: str) -> None:
        subscription = self.subscriptions.get(job_id)
        if subscription is not None:
            subscription.done = True
            self._drop(subscription)
        self.send(muxproto.unsubscribed(job_id))

    def ended(self, subscription: Subscription) -> None:
        """A subscription is over (terminal event sent, or refused by the service). Called
        from inside the hub's fan-out, so it leaves the hub on the next turn of the loop."""
        asyncio.get_running_loop().call_soon(self._drop, subscription)

    def _drop(self, subscription: Subscription) -> None:
        if self.subscriptions.get(subscription.job_id) is not subscription:
            return
        del self.subscriptions[subscription.job_id]
        self.svc.hub.leave(subscription.job_id, subscription)
        self.svc.slots.release_job(subscription.job_id)

    def close(self) -> None:
        self.closed = True
        if self.feed is not None:
            self.svc.feeds.leave(self.user_id, self.feed)
            self.feed = None
        for subscription in list(self.subscriptions.values()):
            subscription.done = True
            self._drop(subscription)


async def mux_socket(request: web.Request) -> web.StreamResponse:
    async with open_socket(request) as (ws, svc):
        user_id = await socket_user(request, ws, svc)
        if user_id is None:
            return ws
        refused = svc.slots.acquire_user(user_id)
        if refused is not None:
            await ws.close(code=CLOSE_TOO_MANY, message=refused.encode())
            return ws
        try:
            await _serve(ws, svc, Outbox(ws, svc.metrics, request.transport), user_id)
        finally:
            svc.slots.release_user(user_id)
    return ws


async def _serve(ws: web.WebSocketResponse, svc: Services, outbox: Outbox, user_id: str) -> None:
    socket = MuxSocket(svc, outbox, user_id)
    try:
        async for message in ws:
            svc.metrics.messages_received.inc()
            try:
                if message.type is not WSMsgType.TEXT:
                    raise muxproto.ProtocolError("only text frames are accepted")
                request = muxproto.parse(message.data)
            except muxproto.ProtocolError as exc:
                await _refuse(ws, outbox, str(exc))
                break
            await socket.handle(request)
    finally:
        socket.close()
        await outbox.aclose()


async def _refuse(ws: web.WebSocketResponse, outbox: Outbox, why: str) -> None:
    """Close with 4400 now: what was queued is dropped, the reason says what was wrong."""
    await outbox.aclose()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await ws.close(code=CLOSE_BAD_REQUEST, message=muxproto.reason(why))
