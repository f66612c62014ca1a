"""Structured (one JSON object per line) logging for the processes."""

from __future__ import annotations

import json
import logging
import os

from jobstate.config import ConfigError


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup(level: str | None = None) -> None:
    """Log JSON lines to stderr at `level` (default JOBSTATE_LOG_LEVEL, INFO). An unknown
    level raises ConfigError, like any bad configuration (the command prints it and exits 2)."""
    name = (level or os.environ.get("JOBSTATE_LOG_LEVEL") or "INFO").upper()
    if not isinstance(logging.getLevelName(name), int):
        raise ConfigError(f"JOBSTATE_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {name!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(name)
