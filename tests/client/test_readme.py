"""README's "Using jobstate from Python" example, run as a user would run it: its own process,
against a real service on loopback."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from support.processes import REPO
from support.servers import service

SECTION = "## Using jobstate from Python"


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION) :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"README's section {SECTION!r} has no python example"
    return match.group(1)


async def test_the_readme_example_runs_to_the_job_end(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    async with service(tmp_path) as running:
        env = {**os.environ, "JOBSTATE_TARGET": f"127.0.0.1:{running.port}"}
        env.pop("JOBSTATE_API_TOKEN", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    versions = [int(line.split()[0]) for line in lines]
    assert versions == sorted(set(versions)), lines
    assert lines[0].split()[1] == "snapshot", lines
    assert lines[-1] == "6 complete complete 100%", lines
