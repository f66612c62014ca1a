"""Limits both sides of the wire agree on: the service enforces them, the gateway and clients
check them before sending. Pure values and one pure function; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

JOB_ID_PATTERN = "[A-Za-z0-9_-]{1,128}"
JOB_ID_RE = re.compile(JOB_ID_PATTERN)

MAX_USER_ID = 256
MAX_KIND = 64
MAX_PARAMS_BYTES = 64 * 1024
# NOTE: each level of objects costs protobuf three nested messages (Struct, map entry, Value)
# and its decoder stops at 100, counted from the outermost message that carries a job
# (WatchJobResponse, ListJobsResponse). Measured: params 33 objects deep still decode there;
# 34 were stored by the service and could never be read back by anyone (every ListJobs that
# met the job failed).
MAX_PARAMS_DEPTH = 32
MAX_MESSAGE = 1024
MAX_ERROR = 4096
MAX_OUTPUT_KEY = 1024
MAX_EXTERNAL_ID = 256
MAX_IDEMPOTENCY_KEY = 128

IDEMPOTENCY_WINDOW = timedelta(hours=24)
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_BATCH_CHANGES = 1000  # changes in one ApplyChanges call
# WatchJobs: the initial state holds at most this many of the user's matching jobs (the newest),
# and a request resumes at most this many jobs (each is one read of its history).
MAX_INITIAL_JOBS = 1000
MAX_AFTER_VERSIONS = 1000


def nesting_depth(value: Any) -> int:
    """Levels of objects and arrays in a JSON value (a scalar is 0, `{}` is 1), counted
    without recursion: parsed JSON can be nested far deeper than is safe to recurse on."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        children: Iterator[Any]
        if isinstance(item, dict):
            children = iter(item.values())
        elif isinstance(item, list):
            children = iter(item)
        else:
            continue
        deepest = max(deepest, depth + 1)
        pending.extend((child, depth + 1) for child in children)
    return deepest
