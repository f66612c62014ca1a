"""Where a job's output may be: under its own `output_prefix`, `{R2_OUTPUT_PREFIX}{job_id}/`.

The gateway hands that prefix to the worker with the job; completion callbacks and the
reconciler accept only keys inside it, so one job can never claim another job's output (and
with it the right to a presigned download of it). Pure: no I/O.
"""

from __future__ import annotations

from jobstate.wire import MAX_OUTPUT_KEY


def output_prefix(root: str, job_id: str) -> str:
    """The job's own prefix; `job_id` is already a plain id (`[A-Za-z0-9_-]`)."""
    return f"{root}{job_id}/"


def key_problem(key: str, prefix: str) -> str | None:
    """Why `key` is not an object inside `prefix` (a phrase: "is not inside 'exports/j/'"),
    or None when it is one."""
    if not key.startswith(prefix):
        return f"is not inside {prefix!r}"
    if len(key) > MAX_OUTPUT_KEY:
        return f"is longer than {MAX_OUTPUT_KEY} characters"
    return _path_problem(key, key[len(prefix) :].split("/"))


def root_problem(root: str) -> str | None:
    """Why `root` (R2_OUTPUT_PREFIX) is not a plain folder every job's prefix can hang from
    (a phrase, as `key_problem`), or None when it is one."""
    if not root.endswith("/"):
        return "must end with '/' (a folder, e.g. exports/)"
    if root.startswith("/"):
        return "must not start with '/'"
    return _path_problem(root, root[:-1].split("/"))


def _path_problem(path: str, segments: list[str]) -> str | None:
    if any(ch < " " or ch in "\\\x7f" for ch in path):
        return "contains a control character or a backslash"
    # Object stores take ".." literally, but local storage, proxies and browsers resolve it:
    # a path that only stays inside its folder until someone normalises it is refused.
    if any(part in ("", ".", "..") for part in segments):
        return "has an empty, '.' or '..' path segment"
    return None
