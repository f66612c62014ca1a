"""Carries events committed by other replicas into this process's hub (PostgreSQL only).

Every commit NOTIFYs `job_id:version:user_id` on one channel. This relay LISTENs on a
dedicated asyncpg connection (outside the pool), and for jobs watched here — by job, or by
their user (WatchJobs) — reads the new events from the events table and publishes them; the
hub drops versions it already has. After a (re)connect, notifications sent meanwhile are lost,
so it catches up every watched job, and on a reconnect ends every user watch (its stream ends
cleanly and the client resumes from what it has): which of a user's jobs changed meanwhile is
unknown here. User watches read their initial state only once the first LISTEN is up.
Anything but a lost connection or an unreachable store (say, an event a newer release wrote
that this one cannot read) ends `run` with the error, for its supervisor to log and restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

import asyncpg
from sqlalchemy.engine import make_url

from jobstate import notify
from jobstate.errors import Unavailable
from jobstate.hub import Hub
from jobstate.store import Store

log = logging.getLogger(__name__)
_HEALTH_CHECK_INTERVAL = 5.0
_MAX_BACKOFF = 2.0
_RETRY_DELAY = 0.5


def asyncpg_dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


class EventRelay:
    def __init__(self, dsn: str, store: Store, hub: Hub) -> None:
        self._dsn = dsn
        self._store = store
        self._hub = hub
        self._dirty: dict[str, int] = {}  # job → the version to read events after
        self._wake = asyncio.Event()
        self._listened = False
        hub.expect_relay()

    async def run(self) -> None:
        """Listen and relay until cancelled or until either half fails unexpectedly."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._listen_loop(), name="relay-listen")
            tasks.create_task(self._fetch_loop(), name="relay-fetch")

    async def _listen_loop(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._listen_once()
                backoff = 0.1
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                log.warning("LISTEN connection lost; reconnecting", exc_info=True)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _listen_once(self) -> None:
        conn = await asyncpg.connect(
            self._dsn, timeout=5, server_settings={"application_name": "jobstate-relay"}
        )
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(notify.CHANNEL, self._on_notify)
            self._mark(self._hub.watched_jobs())  # catch up on what a reconnect missed
            if self._listened:
                self._hub.end_user_watches()
            self._listened = True
            self._hub.relay_listening()
            while True:
                try:
                    await asyncio.wait_for(lost.wait(), _HEALTH_CHECK_INTERVAL)
                except TimeoutError:
                    # A network that silently drops the connection shows up only here.
                    await conn.execute("SELECT 1", timeout=5)
                    continue
                raise ConnectionError("the LISTEN connection was closed")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=2)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        job_id, version, user_id = notify.decode(payload)
        latest = self._hub.latest(job_id)
        if version <= latest:
            return  # published already (this replica's own commits end here)
        if self._hub.watched(job_id):
            self._mark({job_id: latest})
        # An older release's payload names no user: read the job if anyone watches a user.
        elif self._hub.watches_user(user_id) if user_id else self._hub.watches_users:
            self._mark({job_id: version - 1})

    def _mark(self, jobs: Mapping[str, int]) -> None:
        for job_id, after in jobs.items():
            self._dirty[job_id] = min(after, self._dirty.get(job_id, after))
        if self._dirty:
            self._wake.set()

    async def _fetch_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            dirty, self._dirty = self._dirty, {}
            for job_id, marked in dirty.items():
                if not self._hub.watched(job_id) and not self._hub.watches_users:
                    continue
                # Read from where the hub stands when it knows the job: what it lacks between
                # there and the notified version is missing for its watchers too.
                after = self._hub.latest(job_id) or marked
                try:
                    _, events = await self._store.get_with_events(job_id, after)
                except Unavailable as exc:
                    log.warning("relay cannot read %s: %s", job_id, exc.cause)
                    self._mark({job_id: after})
                    await asyncio.sleep(_RETRY_DELAY)  # the store is down: retry, not spin
                    continue
                for event in events:
                    self._hub.publish(event)
