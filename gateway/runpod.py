"""RunPod serverless: `/run` to submit, `/cancel/{id}`, `/status/{id}`, bearer key on each.

`/run` is not idempotent, so it is retried only when the connection could not be made
(nothing was sent); a 5xx or a timeout after sending is a WorkerError saying so. Cancel and
status are idempotent and are also retried on 5xx. 4xx is never retried; a 404 (RunPod does
not know the job) is a WorkerJobNotFound.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from gateway.metrics import Metrics
from gateway.worker import Submission, WorkerError, WorkerJobNotFound, is_external_id

log = logging.getLogger(__name__)

ATTEMPTS = 3
BACKOFF = (0.1, 0.4)


class RunPodClient:
    """A Worker backed by a RunPod serverless endpoint."""

    def __init__(self, endpoint_url: str, api_key: str, timeout: float, metrics: Metrics) -> None:
        self._base = endpoint_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 5.0))
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _request(
        self, operation: str, method: str, path: str, body: Any = None, *, idempotent: bool
    ) -> dict[str, Any]:
        """RunPod's JSON answer. WorkerError otherwise, whose message is ours alone: what
        RunPod (or the network) said is logged here, never passed on to users."""
        url = self._base + path
        not_retried = "" if idempotent else " (not retried: /run is not idempotent)"
        for attempt in range(ATTEMPTS):
            last = attempt == ATTEMPTS - 1
            try:
                async with self._client().request(method, url, json=body) as response:
                    if response.status >= 500 and idempotent and not last:
                        self._metrics.runpod_requests.labels(operation, "retry_5xx").inc()
                        await asyncio.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
                        continue
                    if response.status >= 400:
                        text = (await response.text())[:500]
                        self._metrics.runpod_requests.labels(operation, "refused").inc()
                        log.warning("RunPod %s answered %d: %s", operation, response.status, text)
                        refused = WorkerJobNotFound if response.status == 404 else WorkerError
                        raise refused(
                            f"RunPod answered {response.status}"
                            + (not_retried if response.status >= 500 else ""),
                            status=response.status,
                        )
                    try:
                        data = await response.json(content_type=None)
                    except ValueError:
                        data = None
                    if not isinstance(data, dict):
                        raise WorkerError(f"RunPod {operation} answered something not JSON")
                    self._metrics.runpod_requests.labels(operation, "ok").inc()
                    return data
            except aiohttp.ClientConnectorError as exc:
                # Nothing was sent: safe to retry even /run.
                self._metrics.runpod_requests.labels(operation, "unreachable").inc()
                if last:
                    log.warning("RunPod %s: cannot connect: %s", operation, exc.os_error)
                    raise WorkerError("RunPod is unreachable") from None
                await asyncio.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
            except TimeoutError:
                self._metrics.runpod_requests.labels(operation, "timeout").inc()
                if not idempotent or last:
                    raise WorkerError(
                        f"RunPod {operation} timed out after the request was sent{not_retried}"
                    ) from None
            except aiohttp.ClientError as exc:
                self._metrics.runpod_requests.labels(operation, "failed").inc()
                if not idempotent or last:
                    log.warning("RunPod %s failed: %r", operation, exc)
                    raise WorkerError(f"RunPod {operation} failed{not_retried}") from None
        raise WorkerError(f"RunPod {operation} failed after {ATTEMPTS} attempts")

    async def submit(self, submission: Submission) -> str:
        body = {
            "input": {
                "job_id": submission.job_id,
                "callback_url": submission.callback_url,
                "output_prefix": submission.output_prefix,
                "params": submission.params,
            },
            "webhook": submission.callback_url,
        }
        data = await self._request("run", "POST", "/run", body, idempotent=False)
        external_id = data.get("id")
        if not is_external_id(external_id):
            log.error("RunPod /run answered an id that is not a RunPod job id: %.200r", external_id)
            raise WorkerError("RunPod /run answered without a usable job id")
        return external_id

    async def cancel(self, external_id: str) -> None:
        await self._request("cancel", "POST", _path("cancel", external_id), idempotent=True)

    async def status(self, external_id: str) -> dict[str, Any]:
        return await self._request("status", "GET", _path("status", external_id), idempotent=True)


def _path(operation: str, external_id: str) -> str:
    if not is_external_id(external_id):  # recorded before ids were checked: never a URL
        raise WorkerError(f"{external_id[:200]!r} is not a RunPod job id; {operation} not sent")
    return f"/{operation}/{external_id}"
