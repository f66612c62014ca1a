"""What runs a job: RunPod (`runpod.RunPodClient`) or the built-in simulated worker."""

from __future__ import annotations

from typing import Any, Protocol


class WorkerError(Exception):
    """The worker refused the request or could not be reached; the message says which."""


class Worker(Protocol):
    async def submit(self, job_id: str, callback_url: str, params: dict[str, Any]) -> str:
        """Start the job; returns the worker's id for it. Raises WorkerError."""
        ...

    async def cancel(self, external_id: str) -> None:
        """Ask the worker to stop the job. Raises WorkerError."""
        ...

    async def status(self, external_id: str) -> dict[str, Any]:
        """The worker's own view of the job (RunPod's /status body). Raises WorkerError."""
        ...

    async def close(self) -> None: ...
