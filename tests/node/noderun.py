"""Running tests/node/harness.js: `node` as a child process whose output lines are events."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

NODE = shutil.which("node")
HARNESS = Path(__file__).resolve().parent / "harness.js"
WAIT = 30.0  # s: generous upper bound for one step; never a pace assertion


def has_global_websocket_flag() -> bool:
    """Node 20.10+ has a global WebSocket behind `--experimental-websocket` (22+: always)."""
    assert NODE is not None
    probe = subprocess.run(
        [NODE, "--experimental-websocket", "-e", "process.stdout.write(typeof WebSocket)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.stdout == "function"


class NodeRun:
    """One `node harness.js <config>`: each line it prints is a JSON event, kept in `log`."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr: Path) -> None:
        self.proc = proc
        self.log: list[list[Any]] = []
        self._stderr = stderr

    async def next(self) -> list[Any]:
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), WAIT)
        except TimeoutError:
            raise AssertionError(f"node printed nothing new within {WAIT} s: {self}") from None
        if not line:
            raise AssertionError(f"node ended early: {self}")
        event = json.loads(line)
        assert isinstance(event, list), event
        self.log.append(event)
        return event

    async def until(self, *event: Any) -> list[Any]:
        """Read events until one equal to `event`; returns it."""
        while (got := await self.next()) != list(event):
            pass
        return got

    async def until_all(self, *events: list[Any]) -> None:
        """Read events until each of `events` was printed, in whatever order they came."""
        while any(event not in self.log for event in events):
            await self.next()

    async def exited(self) -> int:
        """The exit code once node ends by itself (nothing of the client's left running);
        everything it printed until then is in `log`."""
        assert self.proc.stdout is not None
        try:
            rest = await asyncio.wait_for(self.proc.stdout.read(), WAIT)
            code = await asyncio.wait_for(self.proc.wait(), WAIT)
        except TimeoutError:
            raise AssertionError(f"node still running after {WAIT} s: {self}") from None
        self.log.extend(json.loads(line) for line in rest.splitlines())
        return code

    def __str__(self) -> str:
        stderr = self._stderr.read_text(errors="replace")[-3000:]
        return f"events {self.log}, stderr:\n{stderr}"
