"""`jobstate jobs watch` with output that is not a terminal: one line per event, the job's
outcome as the exit code, and a watch that outlives a restart of `jobstate serve`."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path

import pytest
from support.ports import free_port
from support.processes import ServeProcess
from support.servers import sqlite_url

from jobstate.client import JobStateClient

from .commands import JOBSTATE, WAIT, WatchProcess, assert_one_line_error, command_env, jobs


def _fields(line: str) -> tuple[str, str, str, str]:
    """(version, status, progress, note) of one event line; the time must be ISO-8601."""
    stamp, version, status, progress, *note = line.split(maxsplit=4)
    assert stamp[:4].isdigit() and "T" in stamp, line
    return version, status, progress, note[0] if note else ""


async def _finish(client: JobStateClient, job_id: str, outcome: str) -> None:
    if outcome == "complete":
        await client.complete_job(job_id, f"exports/{job_id}/out.mp4")
    elif outcome == "error":
        await client.fail_job(job_id, "ffmpeg exited 1")
    else:
        await client.cancel_job(job_id, "operator said so")


@pytest.mark.parametrize(
    ("outcome", "code", "last"),
    [
        ("complete", 0, ("v4", "complete", "100%", "output exports/w/out.mp4")),
        ("error", 1, ("v4", "error", "60%", "ffmpeg exited 1")),
        ("cancelled", 2, ("v4", "cancelled", "60%", "operator said so")),
    ],
)
async def test_watch_prints_each_event_and_exits_with_the_outcome(
    client: JobStateClient,
    env: dict[str, str],
    outcome: str,
    code: int,
    last: tuple[str, str, str, str],
) -> None:
    await client.create_job("u1", job_id="w")
    watch = await WatchProcess.start("w", env)
    try:
        assert _fields(await watch.line()) == ("v1", "pending", "0%", "")
        await client.mark_submitted("w", "rp-1")
        await client.report_progress("w", 60, "rendering frames")
        await _finish(client, "w", outcome)
        result = await watch.finish()
    finally:
        await watch.kill()
    assert (result.code, result.stderr) == (code, "")
    assert [_fields(line) for line in result.lines] == [
        ("v1", "pending", "0%", ""),
        ("v2", "processing", "0%", ""),
        ("v3", "processing", "60%", "rendering frames"),
        last,
    ]


async def test_watch_of_a_finished_job_prints_it_once(
    client: JobStateClient, env: dict[str, str]
) -> None:
    await client.create_job("u1", job_id="old")
    await client.cancel_job("old")
    result = await jobs("watch", "old", env=env)
    assert (result.code, [_fields(line)[:2] for line in result.lines]) == (2, [("v2", "cancelled")])


async def test_watch_keeps_one_line_per_event_whatever_the_message(
    client: JobStateClient, env: dict[str, str]
) -> None:
    """A worker's message with a newline and terminal escapes is printed escaped on the
    event's own line: it cannot forge a line or drive the operator's terminal."""
    await client.create_job("u1", job_id="esc")
    watch = await WatchProcess.start("esc", env)
    try:
        await watch.line()
        await client.report_progress("esc", 10, "line one\nv9 complete\x1b[2J\u202e")
        await client.fail_job("esc", "bad\r\nthing")
        result = await watch.finish()
    finally:
        await watch.kill()
    assert result.code == 1
    assert [_fields(line) for line in result.lines] == [
        ("v1", "pending", "0%", ""),
        ("v2", "processing", "10%", "line one\\nv9 complete\\x1b[2J\\u202e"),
        ("v3", "error", "10%", "bad\\r\\nthing"),
    ]
    assert "\x1b" not in result.stdout


async def test_watch_survives_restarts_and_prints_every_version_once(
    tmp_path: Path,
) -> None:
    """kill -9, then a clean SIGTERM, of `jobstate serve` while watching: the watch says it is
    reconnecting (stderr), resumes where it was and ends with the job's exit code, having
    printed each version exactly once."""
    serve = ServeProcess(database_url=sqlite_url(tmp_path), log_path=tmp_path / "serve.log")
    await serve.start(within=WAIT)
    watch: WatchProcess | None = None
    try:
        async with JobStateClient(serve.target, timeout=WAIT) as client:
            await client.create_job("u1", job_id="r")
            watch = await WatchProcess.start("r", command_env(serve.target))
            assert _fields(await watch.line())[:2] == ("v1", "pending")
            await client.report_progress("r", 10, "first")
            assert _fields(await watch.line())[:3] == ("v2", "processing", "10%")

            await serve.kill()
            await serve.start(within=WAIT)
            await client.report_progress("r", 20, "after kill -9")
            assert _fields(await watch.line())[:3] == ("v3", "processing", "20%")

            await serve.stop()
            await serve.start(within=WAIT)
            await client.report_progress("r", 30, "after SIGTERM")
            await client.cancel_job("r", "enough")
            result = await watch.finish()
    finally:
        if watch is not None:
            await watch.kill()
        await serve.kill()
    assert result.code == 2
    assert [_fields(line)[:3] for line in result.lines] == [
        ("v1", "pending", "0%"),
        ("v2", "processing", "10%"),
        ("v3", "processing", "20%"),
        ("v4", "processing", "30%"),
        ("v5", "cancelled", "30%"),
    ]
    notes = result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    assert [line.split(" ", 1)[0] for line in notes] == ["reconnecting…", "reconnected"] * 2, notes


async def test_watch_that_cannot_start_exits_3(tmp_path: Path) -> None:
    token = "t" * 40
    serve = ServeProcess(database_url=sqlite_url(tmp_path), env={"JOBSTATE_API_TOKEN": token})
    await serve.start(within=WAIT)
    try:
        async with JobStateClient(serve.target, api_token=token, timeout=WAIT) as client:
            await client.create_job("u1", job_id="x")
        good = command_env(serve.target, JOBSTATE_API_TOKEN=token)
        missing = await jobs("watch", "nope", env=good)
        refused = await jobs("watch", "x", env=command_env(serve.target))
    finally:
        await serve.kill()
    nowhere = f"127.0.0.1:{free_port()}"
    unreachable = await jobs("watch", "x", env=command_env(nowhere))
    assert_one_line_error(missing, 3, "nope", "not found")
    assert_one_line_error(refused, 3, serve.target, "JOBSTATE_API_TOKEN")
    assert_one_line_error(unreachable, 3, nowhere)


async def test_ctrl_c_ends_a_watch_with_one_line(
    client: JobStateClient, env: dict[str, str]
) -> None:
    await client.create_job("u1", job_id="i")
    watch = await WatchProcess.start("i", env)
    try:
        await watch.line()
        watch.interrupt()
        result = await watch.finish()
    finally:
        await watch.kill()
    assert (result.code, result.stderr) == (130, "jobstate jobs watch: interrupted\n")


async def test_a_reader_that_leaves_ends_the_watch_quietly(
    client: JobStateClient, env: dict[str, str], tmp_path: Path
) -> None:
    """`jobstate jobs watch J | head -n 1`: once head has gone, the next event ends the watch
    (exit 141, as SIGPIPE would) without a traceback."""
    await client.create_job("u1", job_id="h")
    stderr = tmp_path / "stderr"
    script = (
        f"{shlex.quote(str(JOBSTATE))} jobs watch h 2>{shlex.quote(str(stderr))} | head -n 1;"
        " echo ${PIPESTATUS[0]}"
    )
    shell = await asyncio.create_subprocess_exec(
        "bash", "-c", script, env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert shell.stdout is not None
        first = await asyncio.wait_for(shell.stdout.readline(), WAIT)
        assert _fields(first.decode())[:2] == ("v1", "pending")
        await client.report_progress("h", 50)
        out = await asyncio.wait_for(shell.stdout.read(), WAIT)
    finally:
        if shell.returncode is None:
            shell.kill()
        await shell.wait()
    assert (out.decode(), stderr.read_text()) == ("141\n", "")
