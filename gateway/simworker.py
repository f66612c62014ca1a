"""The built-in simulated worker, used when RUNPOD_ENDPOINT_URL is empty.

It accepts the same submission RunPod would and walks the job through progress callbacks to
`complete` over real HTTP to the callback URL it was given (token included), exactly as a
RunPod worker would; it first puts a small output object into the gateway's storage, so the
download link works end to end.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import aiohttp

from gateway.storage import Storage
from gateway.worker import Submission, WorkerError

log = logging.getLogger(__name__)

STEPS = 10
MAX_REMEMBERED = 10_000


class SimulatedWorker:
    """A Worker that renders nothing, slowly and faithfully."""

    def __init__(self, storage: Storage, step_seconds: float) -> None:
        self._storage = storage
        self._step = step_seconds
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._states: dict[str, str] = {}
        self._session: aiohttp.ClientSession | None = None

    async def submit(self, submission: Submission) -> str:
        external_id = f"sim-{uuid.uuid4().hex}"
        while len(self._states) >= MAX_REMEMBERED:  # forget the oldest finished runs
            del self._states[next(iter(self._states))]
        self._states[external_id] = "IN_QUEUE"
        task = asyncio.get_running_loop().create_task(self._run(external_id, submission))
        self._runs[external_id] = task
        task.add_done_callback(lambda _: self._runs.pop(external_id, None))
        return external_id

    async def cancel(self, external_id: str) -> None:
        task = self._runs.get(external_id)
        if task is not None:
            task.cancel()
            self._states[external_id] = "CANCELLED"

    async def status(self, external_id: str) -> dict[str, Any]:
        if external_id not in self._states:
            raise WorkerError(f"the simulated worker does not know {external_id}")
        return {"id": external_id, "status": self._states[external_id]}

    async def close(self) -> None:
        tasks = list(self._runs.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _post(self, url: str, body: dict[str, Any]) -> bool:
        """POST one callback; False when the job is finished (409/404) and the run should stop."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        for attempt in range(3):
            try:
                async with self._session.post(url, json=body) as response:
                    if response.status < 300:
                        return True
                    if response.status < 500:
                        return False
            except aiohttp.ClientError as exc:
                log.warning("simulated worker: callback failed (%s)", type(exc).__name__)
            await asyncio.sleep(0.2 * (attempt + 1))
        return False

    async def _run(self, external_id: str, submission: Submission) -> None:
        job_id, callback_url = submission.job_id, submission.callback_url
        self._states[external_id] = "IN_PROGRESS"
        for step in range(1, STEPS):
            await asyncio.sleep(self._step)
            body = {
                "status": "progress",
                "progress": step * 100 / STEPS,
                "message": f"Rendering overlay ({step}/{STEPS})",
            }
            if not await self._post(callback_url, body):
                self._states[external_id] = "FAILED"
                return
        await asyncio.sleep(self._step)
        key = f"{submission.output_prefix}{job_id}.mp4"  # where a RunPod worker must write
        try:
            await self._storage.put(key, f"simulated export {job_id}\n".encode(), "video/mp4")
        except Exception as exc:  # report it the way a real worker would
            log.warning("simulated worker: upload of %s failed: %s", key, exc)
            await self._post(callback_url, {"status": "error", "error": f"upload failed: {exc}"})
            self._states[external_id] = "FAILED"
            return
        await self._post(callback_url, {"status": "complete", "output_key": key})
        self._states[external_id] = "COMPLETED"
