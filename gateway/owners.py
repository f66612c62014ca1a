"""Who owns a job: known from the job's shared stream, else asked of the service at most once
at a time per job.

Sockets of one job arrive together (the tabs of a page, every socket of a job reconnecting
after a gateway restart). Until the job's stream has its SNAPSHOT (`WatchHub.owner`), each of
them would make its own GetJob; concurrent askers of one job share one call instead.
"""

from __future__ import annotations

import asyncio

from gateway.watch import WatchHub
from jobstate.client import JobStateClient


class Owners:
    def __init__(self, client: JobStateClient, hub: WatchHub) -> None:
        self._client = client
        self._hub = hub
        self._asking: dict[str, asyncio.Future[str]] = {}

    async def owner(self, job_id: str) -> str:
        """The job's user; raises what `JobStateClient.get_job` raises (`NotFound`, …)."""
        known = self._hub.owner(job_id)
        if known is not None:
            return known
        asking = self._asking.get(job_id)
        if asking is None:
            asking = asyncio.ensure_future(self._ask(job_id))
            self._asking[job_id] = asking
            asking.add_done_callback(lambda done: self._done(job_id, done))
        # One asker leaving (its socket closed) does not cancel the others' answer.
        return await asyncio.shield(asking)

    async def _ask(self, job_id: str) -> str:
        return (await self._client.get_job(job_id)).user_id

    def _done(self, job_id: str, done: asyncio.Future[str]) -> None:
        del self._asking[job_id]
        if not done.cancelled():
            done.exception()  # retrieved: every asker may have left before it failed
