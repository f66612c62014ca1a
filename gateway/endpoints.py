"""Endpoints the gateway's commands call out to: the http(s) URL check, and RunPod's settings
as every command that talks to RunPod reads them (the gateway, the reconciler, `jobstate jobs
cancel`) — one reading, one check, one set of messages."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from jobstate.config import ConfigError

RUNPOD_API_BASE = "https://api.runpod.ai/v2/"


def http_url(value: str, variable: str) -> str:
    """`value` when it is an http(s) URL (without a trailing slash); ConfigError naming
    `variable` otherwise."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{variable} must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


def runpod_endpoint_url(environ: Mapping[str, str]) -> str:
    """RUNPOD_ENDPOINT_URL, else the bare endpoint id in RUNPOD_ENDPOINT expanded to its URL;
    empty without RunPod."""
    url = environ.get("RUNPOD_ENDPOINT_URL", "").strip()
    if not url and (endpoint := environ.get("RUNPOD_ENDPOINT", "").strip()):
        url = RUNPOD_API_BASE + endpoint
    return url.rstrip("/")


def check_runpod(endpoint_url: str, api_key: str) -> None:
    """A RunPod endpoint, when there is one, is an http(s) URL and comes with its key."""
    if endpoint_url:
        http_url(endpoint_url, "RUNPOD_ENDPOINT_URL")
        if not api_key:
            raise ConfigError("RUNPOD_API_KEY is required when RUNPOD_ENDPOINT_URL is set")
