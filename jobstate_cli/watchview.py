"""What `jobstate jobs watch` shows: a live progress bar on a terminal, plain lines elsewhere.

Both views take the same three calls, in any order the watch produces them: `show(event)`
for each event, `reconnecting(error)` when the stream was lost and the client resumes, and
`resumed()` when the service answers again (also implied by the next event).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, Self, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from jobstate.domain import Job, JobEvent
from jobstate.errors import JobStateError
from jobstate_cli.render import duration, event_line, note, percent, printable

RECONNECTING = "reconnecting…"


class WatchView(Protocol):
    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def show(self, event: JobEvent) -> None: ...

    def reconnecting(self, error: JobStateError) -> None: ...

    def resumed(self) -> None: ...


class PlainView:
    """One line per event on `out` (flushed at once, for pipes and logs); connection notes go
    to `err`, so `out` holds events only."""

    def __init__(self, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self._out = out
        self._err = err
        self._lost = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._out.flush()

    def show(self, event: JobEvent) -> None:
        self.resumed()
        print(event_line(event), file=self._out, flush=True)

    def reconnecting(self, error: JobStateError) -> None:
        self._lost = True
        print(f"{RECONNECTING} ({printable(str(error))})", file=self._err, flush=True)

    def resumed(self) -> None:
        if self._lost:
            self._lost = False
            print("reconnected", file=self._err, flush=True)


class _JobElapsed(ProgressColumn):
    """The job's own age (creation to completion, or to now), not the watch's."""

    def render(self, task: Task) -> Text:
        created: datetime = task.fields["created_at"]
        ended: datetime | None = task.fields["completed_at"]
        return Text(duration(((ended or datetime.now(UTC)) - created).total_seconds()))


class TerminalView:
    """A rich progress bar for one job: bar, percentage, status, elapsed, the worker's
    message. Every event is drawn at once; the clock ticks between events."""

    def __init__(self, job: Job, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TextColumn("{task.fields[percent]:>4}", markup=False),
            TextColumn("{task.fields[status]}", markup=False, style="bold"),
            _JobElapsed(),
            TextColumn("{task.fields[note]}", markup=False),
            console=console,
            refresh_per_second=4,
        )
        self._task = self._progress.add_task(job.job_id, total=100, **self._fields(job))
        self._progress.update(self._task, completed=job.progress)
        self._job = job

    @staticmethod
    def _fields(job: Job) -> dict[str, Any]:
        return {
            "percent": percent(job.progress),
            "status": job.status.value,
            "note": note(job),
            "created_at": job.created_at,
            "completed_at": job.completed_at,
        }

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def show(self, event: JobEvent) -> None:
        self._job = event.job
        self.resumed()

    def reconnecting(self, error: JobStateError) -> None:
        self._progress.update(
            self._task, refresh=True, status=RECONNECTING, note=printable(str(error))
        )

    def resumed(self) -> None:
        job = self._job
        self._progress.update(self._task, completed=job.progress, refresh=True, **self._fields(job))
