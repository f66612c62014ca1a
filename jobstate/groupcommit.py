"""Group commit: concurrent writes share one transaction, each acknowledged after its commit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from jobstate.errors import Unavailable
from jobstate.supervisor import Supervisor

Item = TypeVar("Item")
Result = TypeVar("Result")
Waiting = list[tuple[Item, asyncio.Future[Result]]]


class GroupCommit(Generic[Item, Result]):
    """Queues items; one task writes everything queued so far as one batch.

    While a batch commits, new items queue up and form the next batch, so the batch size
    grows with load by itself and an idle system commits each item at once. `run_batch` gets
    the items in arrival order and returns one result per item; if it raises, every item of
    that batch gets the exception (nothing of the batch was committed). `on_committed(items,
    results)` runs after each batch and before its callers hear back. The task runs under
    `supervisor`: if the loop itself fails, every item it holds or that waits gets Unavailable
    (it may have been committed: each change is safe to retry) and the loop is restarted.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Item]], Awaitable[list[Result]]],
        supervisor: Supervisor,
        max_batch: int = 512,
        *,
        name: str = "group-commit",
        stopped: str = "the job store's writer stopped; retry",
        on_committed: Callable[[list[Item], list[Result]], None] | None = None,
    ) -> None:
        self._run_batch = run_batch
        self._on_committed = on_committed
        self._supervisor = supervisor
        self._max_batch = max_batch
        self._name = name
        self._stopped = stopped  # what waiting items hear if the loop stops
        self._pending: Waiting[Item, Result] = []
        self._batch: Waiting[Item, Result] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        if self._task is None:
            self._task = self._supervisor.spawn(self._name, self._loop, self._fail_waiting)
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._wake.set()
        return await future

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                self._batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._commit(self._batch)
                self._batch = []

    async def _commit(self, batch: Waiting[Item, Result]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await self._run_batch(items)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        answers = list(zip(batch, results, strict=True))
        if self._on_committed is not None:
            # Here, in the loop, no caller's cancellation can cut it short.
            self._on_committed(items, results)
        for (_, future), result in answers:
            if not future.done():
                future.set_result(result)

    def _fail_waiting(self) -> None:
        waiting, self._batch, self._pending = self._batch + self._pending, [], []
        for _, future in waiting:
            if not future.done():
                future.set_exception(Unavailable(self._stopped))

    async def close(self) -> None:
        """Stop the loop; writes it had not answered get Unavailable."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._fail_waiting()
