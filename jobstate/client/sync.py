"""A blocking facade over the async client, for scripts and workers that are not async.

`with JobStateClient(target) as client: client.report_progress(job_id, 50)` — the same
methods, arguments, records and errors as `jobstate.client.JobStateClient`; iterators
(`list_jobs`, `watch`, `watch_jobs`) are plain generators. The async client runs on an event
loop in a thread of its own, so this works from any thread, but not from inside a running
event loop's thread (use the async client there).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Collection,
    Coroutine,
    Generator,
    Iterable,
    Mapping,
)
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from jobstate.client.core import JobStateClient as AsyncClient
from jobstate.client.core import Page
from jobstate.client.userfeed import UserFeedItem
from jobstate.domain import Job, JobEvent, Status

T = TypeVar("T")


async def _next(iterator: AsyncIterator[T]) -> T:
    return await anext(iterator)


class JobStateClient:
    def __init__(
        self,
        target: str,
        *,
        api_token: str | None = None,
        tls_ca: str | Path | None = None,
        timeout: float = 5.0,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="jobstate-client", daemon=True
        )
        self._thread.start()

        async def connect() -> AsyncClient:  # the channel belongs to the thread's loop
            return AsyncClient(target, api_token=api_token, tls_ca=tls_ca, timeout=timeout)

        self._client = self._run(connect())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _iterate(self, iterator: AsyncIterator[T]) -> Generator[T, None, None]:
        try:
            while True:
                try:
                    yield self._run(_next(iterator))
                except StopAsyncIteration:
                    return
        finally:
            if isinstance(iterator, AsyncGenerator):
                self._run(iterator.aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def create_job(
        self,
        user_id: str,
        kind: str = "",
        params: dict[str, Any] | None = None,
        *,
        job_id: str = "",
        idempotency_key: str = "",
    ) -> Job:
        return self._run(
            self._client.create_job(
                user_id, kind, params, job_id=job_id, idempotency_key=idempotency_key
            )
        )

    def get_job(self, job_id: str) -> Job:
        return self._run(self._client.get_job(job_id))

    def list_page(
        self,
        user_id: str = "",
        *,
        statuses: Iterable[Status] = (),
        updated_before: datetime | None = None,
        output_key: str = "",
        idempotency_key: str = "",
        page_size: int = 50,
        page_token: str = "",
    ) -> Page:
        return self._run(
            self._client.list_page(
                user_id,
                statuses=tuple(statuses),
                updated_before=updated_before,
                output_key=output_key,
                idempotency_key=idempotency_key,
                page_size=page_size,
                page_token=page_token,
            )
        )

    def list_jobs(
        self,
        user_id: str = "",
        *,
        statuses: Iterable[Status] = (),
        updated_before: datetime | None = None,
        output_key: str = "",
        idempotency_key: str = "",
        page_size: int = 100,
    ) -> Generator[Job, None, None]:
        return self._iterate(
            self._client.list_jobs(
                user_id,
                statuses=tuple(statuses),
                updated_before=updated_before,
                output_key=output_key,
                idempotency_key=idempotency_key,
                page_size=page_size,
            )
        )

    def mark_submitted(self, job_id: str, external_id: str) -> Job:
        return self._run(self._client.mark_submitted(job_id, external_id))

    def report_progress(self, job_id: str, progress: float, message: str = "") -> Job:
        return self._run(self._client.report_progress(job_id, progress, message))

    def complete_job(self, job_id: str, output_key: str) -> Job:
        return self._run(self._client.complete_job(job_id, output_key))

    def fail_job(self, job_id: str, error: str) -> Job:
        return self._run(self._client.fail_job(job_id, error))

    def cancel_job(self, job_id: str, reason: str = "") -> Job:
        return self._run(self._client.cancel_job(job_id, reason))

    def watch(
        self, job_id: str, after_version: int = 0, *, max_backoff: float = 2.0
    ) -> Generator[JobEvent, None, None]:
        """`close()` it to stop watching early (the stream is cancelled)."""
        return self._iterate(self._client.watch(job_id, after_version, max_backoff=max_backoff))

    def watch_jobs(
        self,
        user_id: str,
        *,
        statuses: Iterable[Status] = (),
        after_versions: Mapping[str, int] | None = None,
        read_mask: Collection[str] | None = None,
        max_backoff: float = 2.0,
    ) -> Generator[UserFeedItem, None, None]:
        return self._iterate(
            self._client.watch_jobs(
                user_id,
                statuses=statuses,
                after_versions=after_versions,
                read_mask=read_mask,
                max_backoff=max_backoff,
            )
        )

    def healthy(self, deadline: float = 2.0) -> bool:
        return self._run(self._client.healthy(deadline))
