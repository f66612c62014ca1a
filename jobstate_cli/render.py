"""Jobs and events as text and JSON for the operator commands: pure, no I/O.

Every string that came from the service passes `printable` before it reaches a terminal: a
worker's message or a user id could otherwise carry escape sequences into the operator's
terminal, or a newline that breaks "one line per event".
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from jobstate.domain import Job, JobEvent, Status

TABLE_HEADERS = ("JOB ID", "USER", "KIND", "STATUS", "PROGRESS", "AGE")
# Not carried by the wire's Job message, so always empty in a client's records.
NOT_SENT = frozenset({"idempotency_key"})
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def printable(text: str) -> str:
    """`text` with control, format and separator characters written as escapes (`\\x1b`,
    `\\n`, `\\u202e`), so it shows on one line exactly as sent and cannot drive a terminal."""
    if text.isprintable():
        return text
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in _UNSAFE_CATEGORIES
        else ch
        for ch in text
    )


def job_dict(job: Job) -> dict[str, Any]:
    """Every field the service sends, JSON-ready: times as ISO-8601 (UTC), `None` when unset."""
    return {
        field.name: _json_value(getattr(job, field.name))
        for field in fields(job)
        if field.name not in NOT_SENT
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Status):
        return value.value
    return value


def duration(seconds: float) -> str:
    """A compact, rounded-down span: `45s`, `12m`, `3h`, `2d` (negative clock skew is `0s`)."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def percent(progress: float) -> str:
    return f"{progress:.0f}%"


def table_row(job: Job, now: datetime) -> tuple[str, ...]:
    """One row under TABLE_HEADERS; the age is counted from the job's creation to `now`."""
    return (
        job.job_id,
        printable(job.user_id),
        printable(job.kind),
        job.status.value,
        percent(job.progress),
        duration((now - job.created_at).total_seconds()),
    )


def columns(rows: Sequence[Sequence[str]]) -> str:
    """Rows as plain left-aligned columns two spaces apart, one line each."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def details(job: Job) -> str:
    """Every field, one `name: value` line each, names aligned; params as compact JSON."""
    values = job_dict(job)
    width = max(len(name) for name in values)
    lines = []
    for name, value in values.items():
        if name == "params":
            text = json.dumps(value, sort_keys=True)
        elif value is None or value == "":
            text = "-"
        else:
            text = printable(str(value))
        lines.append(f"{name + ':':<{width + 1}} {text}")
    return "\n".join(lines)


def note(job: Job) -> str:
    """What to show beside the status: the output when complete, the error or the cancel
    reason when it ended otherwise, else the worker's latest message."""
    if job.status is Status.COMPLETE:
        return f"output {printable(job.output_key)}"
    if job.status in (Status.ERROR, Status.CANCELLED) and job.error:
        return printable(job.error)
    return printable(job.message)


def event_line(event: JobEvent) -> str:
    """One watched event as one line: time, version, status, progress, note."""
    job = event.job
    stamp = job.updated_at.isoformat(timespec="milliseconds")
    return (
        f"{stamp}  v{job.version:<4} {job.status.value:<10} {percent(job.progress):>4}  {note(job)}"
    ).rstrip()
