"""The NOTIFY that tells other replicas about a commit (PostgreSQL only): one place that
encodes the payload (the writer) and decodes it (the relay).

A payload is `job_id:version:user_id`, never the event itself: payloads are capped at 8,000
bytes (a user id is at most 256 characters), and listeners read the events from the table.
The user id lets a replica tell which users' watchers (WatchJobs) want the event without a
read. A job id has no colon, so the first two colons split a payload whatever the user id
holds; `job_id:version`, what releases before WatchJobs send, decodes with user id "" (unknown)
during a rolling upgrade.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, text

from jobstate.domain import JobEvent

CHANNEL = "jobstate_events"

# Built once: one round trip for every event of a batch, delivered at commit.
_NOTIFY = text("SELECT pg_notify(:channel, p) FROM unnest(CAST(:payloads AS text[])) AS p")


def encode(job_id: str, version: int, user_id: str) -> str:
    return f"{job_id}:{version}:{user_id}"


def decode(payload: str) -> tuple[str, int, str]:
    """(job_id, version, user_id; "" from an older release); ValueError for a payload
    neither form."""
    job_id, _, rest = payload.partition(":")
    version, _, user_id = rest.partition(":")
    if not job_id:
        raise ValueError(f"no job id in {payload!r}")
    return job_id, int(version), user_id


def notify(conn: Connection, events: Iterable[JobEvent]) -> None:
    """Queue one notification per event, sent when `conn`'s transaction commits."""
    payloads = [encode(event.job_id, event.version, event.job.user_id) for event in events]
    conn.execute(_NOTIFY, {"channel": CHANNEL, "payloads": payloads})
