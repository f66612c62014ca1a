"""The multiplexed socket's protocol (`GET /api/ws`): client messages in, acknowledgements out.

Pure: `parse(text)` turns one text frame into a request or raises `ProtocolError` naming what
was wrong (the socket closes with 4400 and that text); the builders make the server's own
messages. Event messages are the single-job socket's (`translate.event_message`).

Client messages (JSON objects; unknown extra keys are ignored, so clients can add some):
- `{"type":"subscribe","job_id":"…","after":N}` (`after` optional: 0..2^64-1 or null)
- `{"type":"unsubscribe","job_id":"…"}`
- `{"type":"subscribe","jobs":"mine"}` / `{"type":"unsubscribe","jobs":"mine"}`
- `{"type":"ping"}`
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.translate import InvalidJSON, loads

MAX_VERSION = 2**64 - 1  # WatchJob's after_version is a uint64
MAX_JOB_ID = 128
FEED = "mine"
# A close frame's reason holds at most 123 bytes (RFC 6455, 5.5).
MAX_REASON = 123


class ProtocolError(ValueError):
    """A client message that is not one of the protocol's; `str()` says why."""


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Subscribe:
    job_id: str
    after: int | None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    job_id: str


@dataclass(frozen=True, slots=True)
class SubscribeFeed:
    pass


@dataclass(frozen=True, slots=True)
class UnsubscribeFeed:
    pass


Request = Ping | Subscribe | Unsubscribe | SubscribeFeed | UnsubscribeFeed


def parse(text: str) -> Request:
    """One client text frame as a request; ProtocolError if it is not one."""
    try:
        message = loads(text)
    except InvalidJSON as exc:
        raise ProtocolError(f"message is not valid JSON: {exc}") from None
    except ValueError:
        raise ProtocolError("message is not valid JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("message must be a JSON object")
    kind = message.get("type")
    if kind == "ping":
        return Ping()
    if kind not in ("subscribe", "unsubscribe"):
        if not isinstance(kind, str):
            raise ProtocolError("message needs a string type")
        raise ProtocolError(f"unknown message type {_short(kind)}")
    if "jobs" in message:
        if message["jobs"] != FEED or "job_id" in message:
            raise ProtocolError('jobs must be "mine" (and comes without job_id)')
        return SubscribeFeed() if kind == "subscribe" else UnsubscribeFeed()
    job_id = message.get("job_id")
    if not isinstance(job_id, str) or not 1 <= len(job_id) <= MAX_JOB_ID:
        raise ProtocolError(f"{kind} needs a job_id: a string of 1 to {MAX_JOB_ID} characters")
    if kind == "unsubscribe":
        return Unsubscribe(job_id)
    return Subscribe(job_id, _after(message.get("after")))


def _after(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_VERSION:
        raise ProtocolError("after must be a version number (0 to 2^64-1)")
    return value


def _short(text: str) -> str:
    return repr(text[:32] + ("…" if len(text) > 32 else ""))


def reason(text: str) -> bytes:
    """`text` as a close frame's reason, cut to fit."""
    data = text.encode()
    if len(data) <= MAX_REASON:
        return data
    return data[: MAX_REASON - 3].decode(errors="ignore").encode() + b"..."


def subscribed(job_id: str) -> dict[str, Any]:
    return {"type": "subscribed", "job_id": job_id}


def unsubscribed(job_id: str) -> dict[str, Any]:
    return {"type": "unsubscribed", "job_id": job_id}


def feed_subscribed() -> dict[str, Any]:
    return {"type": "subscribed", "jobs": FEED}


def feed_unsubscribed() -> dict[str, Any]:
    return {"type": "unsubscribed", "jobs": FEED}


def subscription_error(job_id: str, code: int, message: str) -> dict[str, Any]:
    """A subscription refused or ended by the service; the socket and its other
    subscriptions go on. `code` is the single-job socket's close code for the same case."""
    return {"type": "subscription_error", "job_id": job_id, "code": code, "message": message}


def feed_error(code: int, message: str) -> dict[str, Any]:
    return {"type": "subscription_error", "jobs": FEED, "code": code, "message": message}
