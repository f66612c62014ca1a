"""`jobstate serve` refuses bad configuration at start: non-zero exit, one clear line on
stderr naming what is wrong. The same flags with the offending part fixed do start."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import pytest

from .conftest import SpawnFactory

Env = dict[str, str | None]


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'jobstate.db'}"


BAD: list[tuple[str, list[str], Env, list[str]]] = [
    # (id, args, env, substrings the one line must contain)
    ("listen-no-port", ["--listen", "nonsense"], {}, ["JOBSTATE_LISTEN", "nonsense"]),
    ("listen-port-range", ["--listen", "127.0.0.1:99999"], {}, ["JOBSTATE_LISTEN", "99999"]),
    ("listen-env", [], {"JOBSTATE_LISTEN": "localhost"}, ["JOBSTATE_LISTEN", "localhost"]),
    (
        "database-scheme",
        ["--database-url", "mysql+aiomysql://u@127.0.0.1/db"],
        {},
        ["JOBSTATE_DATABASE_URL", "mysql"],
    ),
    (
        "database-sync-driver",
        ["--database-url", "postgresql://postgres@127.0.0.1/db"],
        {},
        ["JOBSTATE_DATABASE_URL", "postgresql+asyncpg"],
    ),
    (
        "database-env",
        [],
        {"JOBSTATE_DATABASE_URL": "redis://127.0.0.1/0"},
        ["JOBSTATE_DATABASE_URL", "redis"],
    ),
    (
        "production-public-no-token",
        ["--listen", "0.0.0.0:0"],
        {"ENVIRONMENT": "production"},
        ["JOBSTATE_API_TOKEN", "0.0.0.0:0"],
    ),
    (
        "production-by-default",
        ["--listen", "0.0.0.0:0"],
        {"ENVIRONMENT": None},
        ["JOBSTATE_API_TOKEN"],
    ),
    ("environment-unknown", [], {"ENVIRONMENT": "staging"}, ["ENVIRONMENT", "staging"]),
]


@pytest.fixture
def starts() -> asyncio.Semaphore:
    """Process starts are CPU-heavy (imports): a few at a time keeps 2 cores responsive."""
    return asyncio.Semaphore(3)


async def run_bad(
    spawn: SpawnFactory, starts: asyncio.Semaphore, db: str, args: list[str], env: Env
) -> tuple[int, list[str]]:
    if "--database-url" not in args and "JOBSTATE_DATABASE_URL" not in env:
        args = [*args, "--database-url", db]
    if "--listen" not in args and "JOBSTATE_LISTEN" not in env:
        args = [*args, "--listen", "127.0.0.1:0"]
    async with starts:
        serve = await spawn(*args, env=env, listening=False)
        code = await serve.wait()
    return code, [line for line in serve.stderr if line.strip()]


async def test_bad_configuration_stops_with_one_clear_line(
    spawn: SpawnFactory, starts: asyncio.Semaphore, db: str
) -> None:
    # All at once (each is a process start): compare the whole table in one assertion.
    results = await asyncio.gather(
        *(run_bad(spawn, starts, db, args, env) for _, args, env, _ in BAD)
    )
    outcome = {
        name: (code != 0, len(lines), [part for part in expected if part not in "".join(lines)])
        for (name, _, _, expected), (code, lines) in zip(BAD, results, strict=True)
    }
    assert outcome == {name: (True, 1, []) for name, *_ in BAD}, {
        name: lines for (name, *_), (_, lines) in zip(BAD, results, strict=True)
    }


async def test_listen_address_not_on_this_host_stops_with_one_clear_line(
    spawn: SpawnFactory, db: str
) -> None:
    # TEST-NET-1 is never a local address: binding fails. grpc core also logs the failure to
    # stderr by itself, which makes a second, unstructured line.
    serve = await spawn("--listen", "192.0.2.1:50051", "--database-url", db, listening=False)
    code = await serve.wait()
    lines = [line for line in serve.stderr if line.strip()]
    assert (code != 0, len(lines)) == (True, 1), lines
    assert "192.0.2.1:50051" in lines[0]


async def test_unreachable_database_stops_with_a_clear_last_line(spawn: SpawnFactory) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/jobstate"
    serve = await spawn("--listen", "127.0.0.1:0", "--database-url", url, listening=False)
    code = await serve.wait()
    lines = [line for line in serve.stderr if line.strip()]
    # Not a configuration error: the structured log may carry the detail before the last line.
    assert code != 0
    assert lines[-1].startswith("jobstate serve: ") and "unavailable" in lines[-1], lines
    assert all(line.startswith("{") for line in lines[:-1]), lines


GOOD: list[tuple[str, list[str], Env]] = [
    (
        "production-public-with-token",
        ["--listen", "0.0.0.0:0"],
        {"ENVIRONMENT": "production", "JOBSTATE_API_TOKEN": "t0ken"},
    ),
    ("development-public", ["--listen", "0.0.0.0:0"], {"ENVIRONMENT": "development"}),
    (
        "production-loopback-flags-override-bad-variables",
        ["--listen", "127.0.0.1:0"],
        {
            "ENVIRONMENT": "production",  # loopback needs no token, even in production
            "JOBSTATE_LISTEN": "nonsense",
            "JOBSTATE_DATABASE_URL": "mysql+aiomysql://u@h/db",
        },
    ),
]


async def run_good(
    spawn: SpawnFactory, starts: asyncio.Semaphore, db: str, args: list[str], env: Env
) -> tuple[bool, int]:
    async with starts:
        serve = await spawn(*args, "--database-url", db, env=env)
        serve.kill(signal.SIGTERM)
        return serve.port > 0, await serve.wait()


async def test_good_configuration_starts(
    spawn: SpawnFactory, starts: asyncio.Semaphore, tmp_path: Path
) -> None:
    # The bad cases with the offending part fixed do start (and stop cleanly on SIGTERM).
    dbs = [f"sqlite+aiosqlite:///{tmp_path / f'{name}.db'}" for name, _, _ in GOOD]
    results = await asyncio.gather(
        *(
            run_good(spawn, starts, db, args, env)
            for (_, args, env), db in zip(GOOD, dbs, strict=True)
        )
    )
    assert dict(zip([g[0] for g in GOOD], results, strict=True)) == {
        name: (True, 0) for name, _, _ in GOOD
    }
    assert db_files(tmp_path) == sorted(f"{g[0]}.db" for g in GOOD)


def db_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.glob("*.db"))
