"""What runs a job: RunPod (`runpod.RunPodClient`) or the built-in simulated worker."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard

# RunPod's job ids are UUIDs, some with a suffix ("-u1") or prefix ("sync-"); the simulated
# worker's are "sim-<hex>". Nothing else is accepted as a worker's id, so an id can never
# reach another RunPod path ("..", "a/b") when it is put into a URL.
EXTERNAL_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def is_external_id(value: object) -> TypeGuard[str]:
    """True for a plain worker job id (`EXTERNAL_ID`)."""
    return isinstance(value, str) and EXTERNAL_ID.fullmatch(value) is not None


class WorkerError(Exception):
    """The worker refused the request or could not be reached; the message says which in
    our own words (fit for users: nothing the worker said), `status` is its HTTP status."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class WorkerJobNotFound(WorkerError):
    """The worker does not know the job (RunPod answered 404): it never had it, or forgot it."""


@dataclass(frozen=True, slots=True)
class Submission:
    """What a worker is given: where to report (`callback_url`), where it may write its
    output (`output_prefix`, nowhere else) and the export's parameters."""

    job_id: str
    callback_url: str
    output_prefix: str
    params: dict[str, Any]


class Worker(Protocol):
    async def submit(self, submission: Submission) -> str:
        """Start the job; returns the worker's id for it (`is_external_id`). Raises
        WorkerError."""
        ...

    async def cancel(self, external_id: str) -> None:
        """Ask the worker to stop the job. Raises WorkerError."""
        ...

    async def status(self, external_id: str) -> dict[str, Any]:
        """The worker's own view of the job (RunPod's /status body). Raises WorkerError."""
        ...

    async def close(self) -> None: ...
