"""Abuse limits: unfinished jobs and starts per minute per user; sockets per user and per job
(a subscription on a multiplexed socket counts as a socket of its job).

Starts beyond a limit raise `TooManyRequests` (429 with `Retry-After`) before anything is
created or submitted. Sockets beyond a cap are closed by `ws` with `CLOSE_TOO_MANY` (4429).

NOTE on several gateways: the unfinished-jobs count is asked of the service (ListJobs with a
status filter), so it holds across gateways, give or take starts racing on different ones.
Starts per minute and the socket caps are counted in this process: behind a load balancer
with N gateways a user can get up to N times as much. That is deliberate — they are abuse
limits, not quotas, and sharing counters would add a store to every start and connect.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import defaultdict
from collections.abc import Awaitable, Callable

from gateway.errors import TooManyRequests
from gateway.ratelimit import RateLimiter
from jobstate.client import Job, JobStateClient, Status
from jobstate.wire import MAX_PAGE_SIZE

CLOSE_TOO_MANY = 4429
UNFINISHED = (Status.PENDING, Status.PROCESSING)
# Jobs take minutes; asking again sooner than this is pointless.
UNFINISHED_RETRY_AFTER = 30


class StartLimits:
    """Admission of `POST /api/export/overlay/start`, per user."""

    def __init__(
        self,
        client: JobStateClient,
        *,
        max_unfinished: int,
        max_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._max_unfinished = max_unfinished
        self._rate = RateLimiter(max_per_minute, 60.0, clock)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def create(self, user_id: str, key: str, create: Callable[[], Awaitable[Job]]) -> Job:
        """The job an Idempotency-Key `key` already made (the service's word, so it holds on
        every gateway), unchecked and without calling `create`; else run `create` (CreateJob)
        if `user_id` may start a job, or raise TooManyRequests and create nothing. So a start
        that creates a job always passes the limits. A user's starts are admitted one at a
        time here, so concurrent starts cannot all pass the unfinished-jobs check together."""
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            if key and (earlier := await self._job_for_key(user_id, key)) is not None:
                return earlier
            wait = self._rate.acquire(user_id)
            if wait:
                limit = self._rate.limit
                raise TooManyRequests(
                    f"more than {limit} starts a minute; try again in {wait} s", wait
                )
            try:
                await self._check_unfinished(user_id)
                job = await create()
            except BaseException:
                self._rate.refund(user_id)  # nothing was started
                raise
            if job.version > 1 or job.status is not Status.PENDING:
                # The service returned a job another gateway made with this key meanwhile.
                self._rate.refund(user_id)
            return job

    async def _job_for_key(self, user_id: str, key: str) -> Job | None:
        """The job `user_id` created with `key` within the service's 24 h window (the one
        CreateJob would return for it), or None."""
        page = await self._client.list_page(user_id, idempotency_key=key, page_size=1)
        return page.jobs[0] if page.jobs else None

    async def _check_unfinished(self, user_id: str) -> None:
        # Counts pages only until the limit is reached: one small call for most users.
        count, token = 0, ""
        while True:
            size = min(self._max_unfinished - count, MAX_PAGE_SIZE)
            page = await self._client.list_page(
                user_id, statuses=UNFINISHED, page_size=size, page_token=token
            )
            count += len(page.jobs)
            token = page.next_page_token
            if count >= self._max_unfinished:
                raise TooManyRequests(
                    f"you have {self._max_unfinished} unfinished jobs, the most allowed; "
                    "wait for one to finish or cancel one",
                    UNFINISHED_RETRY_AFTER,
                )
            if not token:
                return


class SocketSlots:
    """Open sockets per user and per job in this process; entries vanish at zero."""

    def __init__(self, *, max_per_user: int, max_per_job: int) -> None:
        self.max_per_user = max_per_user
        self.max_per_job = max_per_job
        self.per_user: defaultdict[str, int] = defaultdict(int)
        self.per_job: defaultdict[str, int] = defaultdict(int)

    def acquire(self, user_id: str, job_id: str) -> str | None:
        """Take a user slot and a job slot; None if granted, else the reason (the socket's
        close message)."""
        refused = self.acquire_user(user_id)
        if refused is None:
            refused = self.acquire_job(job_id)
            if refused is not None:
                self.release_user(user_id)
        return refused

    def release(self, user_id: str, job_id: str) -> None:
        self.release_user(user_id)
        self.release_job(job_id)

    def acquire_user(self, user_id: str) -> str | None:
        """A user slot alone (a multiplexed socket takes one, and a job slot per job)."""
        if self.per_user.get(user_id, 0) >= self.max_per_user:
            return f"too many sockets for this user (limit {self.max_per_user})"
        self.per_user[user_id] += 1
        return None

    def acquire_job(self, job_id: str) -> str | None:
        if self.per_job.get(job_id, 0) >= self.max_per_job:
            return f"too many sockets for this job (limit {self.max_per_job})"
        self.per_job[job_id] += 1
        return None

    def release_user(self, user_id: str) -> None:
        _release(self.per_user, user_id)

    def release_job(self, job_id: str) -> None:
        _release(self.per_job, job_id)


def _release(counts: defaultdict[str, int], key: str) -> None:
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]
