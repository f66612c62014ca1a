"""Who owns a job, before a socket may watch it.

A job this gateway follows has a known owner (`WatchHub.owner`). Otherwise the hub starts the
job's follow and the owner comes with its SNAPSHOT (`WatchHub.learn_owner`): one round trip
instead of a GetJob and then the follow, and sockets of one job arriving together (the tabs of
a page, every socket of a job reconnecting after a gateway restart) wait for the same answer.
"""

from __future__ import annotations

import asyncio

from gateway.watch import WatchHub
from jobstate.client import Unavailable


class Owners:
    def __init__(self, hub: WatchHub, timeout: float) -> None:
        self._hub = hub
        self._timeout = timeout

    async def owner(self, job_id: str) -> str:
        """The job's user; raises the client's errors (`NotFound`, …) as the service ends the
        follow, `Unavailable` when it has not answered within the gateway's RPC timeout."""
        known = self._hub.owner(job_id)
        if known is not None:
            return known
        try:
            async with asyncio.timeout(self._timeout):
                return await self._hub.learn_owner(job_id)
        except TimeoutError:
            raise Unavailable("the service did not answer in time") from None
