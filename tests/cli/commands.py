"""The real `jobstate jobs ...` console script as a subprocess: run to its end, or (`watch`)
read line by line while it runs."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

WAIT = 60.0  # a process start or a whole command on a loaded 2-core machine
JOBSTATE = Path(sys.executable).with_name("jobstate")
# Variables that would change what the command does or how rich draws: the test sets its own.
_FOREIGN = ("JOBSTATE_", "RUNPOD_", "FORCE_COLOR", "NO_COLOR", "TTY_", "COLUMNS", "LINES")


def command_env(target: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    return {**env, "JOBSTATE_TARGET": target, **extra}


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


async def jobs(*args: str, env: Mapping[str, str]) -> Result:
    """`jobstate jobs ARGS...` to its end, stdout and stderr captured (not a terminal)."""
    proc = await asyncio.create_subprocess_exec(
        str(JOBSTATE),
        "jobs",
        *args,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    """The command failed with `code`, said so in one line on stderr naming `fragments`, and
    printed no traceback and nothing on stdout."""
    assert (result.code, result.stdout) == (code, ""), result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


class WatchProcess:
    """`jobstate jobs watch JOB_ID` with stdout and stderr piped (not a terminal); `line()`
    reads the next line of stdout while it runs, `finish()` waits for the end."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self.lines: list[str] = []

    @classmethod
    async def start(cls, job_id: str, env: Mapping[str, str]) -> WatchProcess:
        proc = await asyncio.create_subprocess_exec(
            str(JOBSTATE),
            "jobs",
            "watch",
            job_id,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def line(self) -> str:
        assert self._proc.stdout is not None
        raw = await asyncio.wait_for(self._proc.stdout.readline(), WAIT)
        assert raw, f"the watch ended early (exit {await self._proc.wait()})"
        self.lines.append(raw.decode().rstrip("\n"))
        return self.lines[-1]

    async def finish(self) -> Result:
        """Wait for the exit; `stdout` is every line the watch printed, read or not."""
        try:
            out, err = await asyncio.wait_for(self._proc.communicate(), WAIT)
        finally:
            await self.kill()
        assert self._proc.returncode is not None
        self.lines.extend(out.decode().splitlines())
        return Result(
            self._proc.returncode, "".join(f"{line}\n" for line in self.lines), err.decode()
        )

    def interrupt(self) -> None:
        """What Ctrl-C sends."""
        self._proc.send_signal(signal.SIGINT)

    async def kill(self) -> None:
        if self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
