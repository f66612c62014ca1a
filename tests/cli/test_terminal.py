"""`jobstate jobs watch` and `list` on a terminal: a pseudo-terminal (`pty.openpty()`) is the
command's stdout, and the test reads the bytes it drew."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import struct
import termios
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.poll import eventually
from support.processes import ServeProcess
from support.servers import sqlite_url

from jobstate.client import JobStateClient

from .commands import JOBSTATE, WAIT, command_env

EVENT_LINE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d")
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """A 24x120 pseudo-terminal; everything written to it collects in `output`, and `closed`
    is set once every writer has closed it."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
        self.output = bytearray()
        self.closed = asyncio.Event()
        asyncio.get_running_loop().add_reader(self.master, self._read)

    def _read(self) -> None:
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the last writer closed its end
            chunk = b""
        if chunk:
            self.output += chunk
        else:
            asyncio.get_running_loop().remove_reader(self.master)
            self.closed.set()

    async def shows(self, text: str) -> None:
        async def drawn() -> bool:
            return text.encode() in self.output

        await eventually(drawn, within=WAIT, what=f"{text!r} on the terminal")

    async def run(self, *args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
        """Start `jobstate jobs ARGS...` with this terminal as its stdout."""
        proc = await asyncio.create_subprocess_exec(
            str(JOBSTATE),
            "jobs",
            *args,
            env={**env, "TERM": "xterm-256color"},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self.slave,
            stderr=asyncio.subprocess.PIPE,
        )
        os.close(self.slave)  # the child holds it now; its exit is then our end of file
        return proc

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)


@contextmanager
def terminal() -> Iterator[Terminal]:
    term = Terminal()
    try:
        yield term
    finally:
        term.close()


async def _end(proc: asyncio.subprocess.Process, term: Terminal) -> tuple[int, bytes]:
    try:
        assert proc.stderr is not None
        err = await asyncio.wait_for(proc.stderr.read(), WAIT)
        code = await asyncio.wait_for(proc.wait(), WAIT)
        await asyncio.wait_for(term.closed.wait(), WAIT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return code, err


async def test_watch_draws_a_live_bar_through_a_restart(tmp_path: Path) -> None:
    serve = ServeProcess(database_url=sqlite_url(tmp_path), log_path=tmp_path / "serve.log")
    await serve.start(within=WAIT)
    try:
        async with JobStateClient(serve.target, timeout=WAIT) as client:
            await client.create_job("u1", "overlay", job_id="bar")
            with terminal() as term:
                proc = await term.run("watch", "bar", env=command_env(serve.target))
                await term.shows("pending")
                await client.report_progress("bar", 37, "rendering frames")
                await term.shows("37%")
                await term.shows("rendering frames")

                await serve.kill()
                await term.shows("reconnecting…")
                await serve.start(within=WAIT)
                await client.complete_job("bar", "exports/bar/out.mp4")
                code, err = await _end(proc, term)
                drawn = bytes(term.output)
    finally:
        await serve.kill()
    assert (code, err) == (0, b"")
    final = drawn[drawn.rindex(b"reconnecting") :]
    for text in (b"100%", b"complete", b"output exports/bar/out.mp4"):
        assert text in final, drawn[-600:]
    assert b"\x1b[" in drawn and not EVENT_LINE.search(drawn)  # drawn, not printed as lines


async def test_list_draws_a_table(client: JobStateClient, serve: ServeProcess) -> None:
    await client.create_job("alice", "overlay", job_id="t1")
    await client.create_job("bob", "thumbnail", job_id="t2")
    await client.report_progress("t2", 55)
    with terminal() as term:
        proc = await term.run("list", env=command_env(serve.target))
        code, err = await _end(proc, term)
        drawn = bytes(term.output)
    assert (code, err) == (0, b"")
    text = ESCAPE.sub("", drawn.decode())
    rows = [line.split() for line in text.splitlines() if line.strip()]
    table = [row for row in rows if row[0] in ("JOB", "t1", "t2")]
    assert [row[:5] for row in table] == [
        ["JOB", "ID", "USER", "KIND", "STATUS"],
        ["t2", "bob", "thumbnail", "processing", "55%"],
        ["t1", "alice", "overlay", "pending", "0%"],
    ]
    assert b"\x1b[" in drawn  # styled for a terminal (the status colours)
