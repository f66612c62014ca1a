"""Handing a new job to the worker once, and recording the id the worker gave it.

`/run` is not idempotent and costs a GPU run, so once the worker accepted a job its start
never answers 5xx and is not submitted again from this process: recording the id
(MarkSubmitted, idempotent) is retried, a few times at once while the user waits and then by
a background task until the service answers. A job that finished meanwhile (cancelled while
`/run` was in flight, or failed by the reconciler) is cancelled on the worker as soon as the
id is known.

NOTE: "not submitted again" holds per gateway process. A replay that reaches another gateway
while this one is still recording the id finds a pending job without one and submits it
again; the service cannot know about a run until its id is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from gateway.errors import BadGateway
from gateway.outputs import output_prefix
from gateway.worker import Submission, Worker, WorkerError
from jobstate.client import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    Job,
    JobStateClient,
    JobStateError,
    NotFound,
    Status,
)

log = logging.getLogger(__name__)

# Fast failures (UNAVAILABLE from a replica that is restarting, say) are retried at once;
# a call that used up its whole deadline is not: the rest happens in the background.
INLINE_DELAYS = (0.1, 0.3)
BACKGROUND_FIRST_DELAY = 0.5
BACKGROUND_MAX_DELAY = 30.0
# Answers that no retry changes: the job is gone, or the service refuses the id.
_DEFINITIVE = (NotFound, InvalidArgument)
_STOPPED = frozenset({Status.CANCELLED, Status.ERROR})


def _backoff() -> Iterator[float]:
    delay = BACKGROUND_FIRST_DELAY
    while True:
        yield delay
        delay = min(delay * 2, BACKGROUND_MAX_DELAY)


class Submitter:
    """Submits jobs to `worker` and records their ids through `client`; `close()` ends the
    background recordings (logged: their runs are then left to the reconciler)."""

    def __init__(self, client: JobStateClient, worker: Worker, output_root: str) -> None:
        self._client = client
        self._worker = worker
        self._output_root = output_root
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._recording: dict[str, asyncio.Task[None]] = {}

    async def ensure_submitted(self, job: Job, params: dict[str, Any], callback_url: str) -> Job:
        """Submit `job` unless it was submitted (or its id is being recorded here) already;
        the job as far as this gateway knows it afterwards. Submissions of one job are
        serialised in this process. Raises BadGateway (the job made `error`) when the worker
        refused or could not be reached, and JobStateError only before any `/run`."""
        lock = self._locks.setdefault(job.job_id, asyncio.Lock())
        contended = lock.locked()
        async with lock:
            if contended or job.version > 1 or job.status is not Status.PENDING:
                job = await self._client.get_job(job.job_id)
            if job.status is not Status.PENDING or job.external_id:
                return job
            if job.job_id in self._recording:  # the worker has it; the id is on its way
                return _processing(job)
            external_id = await self._submit(job, params, callback_url)
            return await self._record(job, external_id)

    async def close(self) -> None:
        tasks = list(self._recording.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _submit(self, job: Job, params: dict[str, Any], callback_url: str) -> str:
        prefix = output_prefix(self._output_root, job.job_id)
        try:
            return await self._worker.submit(Submission(job.job_id, callback_url, prefix, params))
        except WorkerError as exc:
            log.warning("submission of %s failed: %s", job.job_id, exc)
            try:
                await self._client.fail_job(
                    job.job_id, f"submission to the GPU worker failed: {exc}"
                )
            except JobStateError as failing:
                log.error("could not mark %s as failed: %s", job.job_id, type(failing).__name__)
            message = f"the GPU worker could not take the job: {exc}"
            raise BadGateway(message, job_id=job.job_id) from None

    async def _record(self, job: Job, external_id: str) -> Job:
        """Record `external_id`, retrying fast failures; hand slow or lasting ones to a
        background task and answer with the job as the worker now has it."""
        for delay in (*INLINE_DELAYS, None):
            try:
                return await self._record_once(job.job_id, external_id)
            except _DEFINITIVE as exc:
                await self._orphaned(job.job_id, external_id, exc)
                return job
            except JobStateError as exc:
                name = type(exc).__name__
                log.warning("recording %s of %s failed: %s", external_id, job.job_id, name)
                if delay is None or isinstance(exc, DeadlineExceeded):
                    break
                await asyncio.sleep(delay)
        task = asyncio.get_running_loop().create_task(self._keep_recording(job.job_id, external_id))
        self._recording[job.job_id] = task
        task.add_done_callback(lambda _: self._recording.pop(job.job_id, None))
        return _processing(job)

    async def _keep_recording(self, job_id: str, external_id: str) -> None:
        """Retry until the service answers; supervised: nothing ends it but an answer (or
        `close()`), and every failure is logged."""
        try:
            for delay in _backoff():
                await asyncio.sleep(delay)
                try:
                    await self._record_once(job_id, external_id)
                    log.info("recorded %s of %s after retrying", external_id, job_id)
                    return
                except _DEFINITIVE as exc:
                    await self._orphaned(job_id, external_id, exc)
                    return
                except JobStateError as exc:
                    log.warning(
                        "recording %s of %s failed: %s; retrying",
                        external_id,
                        job_id,
                        type(exc).__name__,
                    )
                except Exception:  # a bug must not end the retries silently
                    log.exception("recording %s of %s failed", external_id, job_id)
        except asyncio.CancelledError:
            log.error(
                "stopped before %s of %s was recorded; the reconciler will settle the job",
                external_id,
                job_id,
            )
            raise

    async def _record_once(self, job_id: str, external_id: str) -> Job:
        """MarkSubmitted; if the job finished meanwhile and will not complete, the worker's
        run is cancelled. Raises JobStateError (FailedPrecondition excepted)."""
        try:
            return await self._client.mark_submitted(job_id, external_id)
        except FailedPrecondition:
            pass
        # A fast worker finished, the user cancelled while /run was in flight, or the job was
        # failed (or given another id) before this one could be recorded.
        job = await self._client.get_job(job_id)
        if job.status in _STOPPED:
            await self._cancel_run(job_id, external_id)
        elif job.status is Status.PROCESSING and job.external_id != external_id:
            log.error("%s already records another worker job than %s", job_id, external_id)
        return job

    async def _orphaned(self, job_id: str, external_id: str, error: JobStateError) -> None:
        name = type(error).__name__
        log.error("cannot record %s of %s (%s); cancelling it", external_id, job_id, name)
        await self._cancel_run(job_id, external_id)

    async def _cancel_run(self, job_id: str, external_id: str) -> None:
        try:
            await self._worker.cancel(external_id)
        except WorkerError as exc:  # the job is settled here either way
            log.warning("cancelling %s of %s on the worker failed: %s", external_id, job_id, exc)
        else:
            log.info("cancelled %s: %s finished before the id was recorded", external_id, job_id)


def _processing(job: Job) -> Job:
    """`job` as the worker has it: processing, though the service does not know it yet."""
    return replace(job, status=Status.PROCESSING)
