"""The NOTIFY that tells other replicas about a commit (PostgreSQL only): one place that
encodes the payload (the writer) and decodes it (the relay).

A payload is `job_id:version`, never the event itself: payloads are capped at 8,000 bytes,
and listeners read the events from the table.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, text

CHANNEL = "jobstate_events"

# Built once: one round trip for every event of a batch, delivered at commit.
_NOTIFY = text("SELECT pg_notify(:channel, p) FROM unnest(CAST(:payloads AS text[])) AS p")


def encode(job_id: str, version: int) -> str:
    return f"{job_id}:{version}"


def decode(payload: str) -> tuple[str, int]:
    """(job_id, version); ValueError for a payload `encode` did not make."""
    job_id, _, version = payload.rpartition(":")
    return job_id, int(version)


def notify(conn: Connection, events: Iterable[tuple[str, int]]) -> None:
    """Queue one notification per (job_id, version), sent when `conn`'s transaction commits."""
    payloads = [encode(job_id, version) for job_id, version in events]
    conn.execute(_NOTIFY, {"channel": CHANNEL, "payloads": payloads})
