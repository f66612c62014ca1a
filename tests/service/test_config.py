"""Bad configuration stops `jobstate serve` at start: non-zero exit, one clear line on stderr
naming what is wrong. The same flags with the offending part fixed do start.

Every rule is checked on `ServiceConfig.from_env` (flags as the CLI passes them); a few
representative cases, and what only shows at start (binding, the database), run the real
process - each start costs ~1.5 s of CPU in imports alone.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from jobstate.config import ConfigError, ServiceConfig

from .conftest import SpawnFactory

Env = dict[str, str | None]
DB = "sqlite+aiosqlite:///./data/never-created.db"
TOKEN = "a-service-token-of-at-least-32-bytes"

# (id, flags, environment, substrings the one line must contain)
BAD: list[tuple[str, dict[str, str], Env, list[str]]] = [
    ("listen-no-port", {"listen": "nonsense"}, {}, ["--listen", "nonsense"]),
    ("listen-port-range", {"listen": "127.0.0.1:99999"}, {}, ["--listen", "99999"]),
    ("listen-empty-port", {"listen": "127.0.0.1:"}, {}, ["--listen"]),
    ("listen-env", {}, {"JOBSTATE_LISTEN": "localhost"}, ["JOBSTATE_LISTEN", "localhost"]),
    (
        "database-scheme",
        {"database_url": "mysql+aiomysql://u@127.0.0.1/db"},
        {},
        ["--database-url", "mysql"],
    ),
    (
        "database-sync-driver",
        {"database_url": "postgresql://postgres@127.0.0.1/db"},
        {},
        ["--database-url", "postgresql+asyncpg"],
    ),
    ("database-not-a-url", {"database_url": "not a url"}, {}, ["--database-url"]),
    (
        "database-memory",
        {"database_url": "sqlite+aiosqlite:///:memory:"},
        {},
        ["--database-url"],
    ),
    ("tls-cert-flag-alone", {"tls_cert": "c.pem"}, {}, ["--tls-cert and --tls-key"]),
    (
        "tls-cert-variable-alone",
        {},
        {"JOBSTATE_TLS_CERT": "c.pem"},
        ["JOBSTATE_TLS_CERT and JOBSTATE_TLS_KEY"],
    ),
    (
        "weak-token",
        {},
        {"ENVIRONMENT": "production", "JOBSTATE_API_TOKEN": "t0ken"},
        ["JOBSTATE_API_TOKEN must be at least 32 bytes in production, got 5"],
    ),
    (
        "weak-token-by-default",
        {"listen": "0.0.0.0:50051"},
        {"JOBSTATE_API_TOKEN": "t" * 31},
        ["JOBSTATE_API_TOKEN must be at least 32 bytes in production, got 31"],
    ),
    (
        "database-env",
        {},
        {"JOBSTATE_DATABASE_URL": "redis://127.0.0.1/0"},
        ["JOBSTATE_DATABASE_URL", "redis"],
    ),
    (
        "production-public-no-token",
        {"listen": "0.0.0.0:50051"},
        {"ENVIRONMENT": "production"},
        ["JOBSTATE_API_TOKEN", "0.0.0.0:50051"],
    ),
    (
        "production-ipv6-public-no-token",
        {"listen": "[::]:50051"},
        {"ENVIRONMENT": "production"},
        ["JOBSTATE_API_TOKEN"],
    ),
    ("production-by-default", {"listen": "0.0.0.0:50051"}, {}, ["JOBSTATE_API_TOKEN"]),
    (
        "environment-unknown",
        {},
        {"ENVIRONMENT": "staging"},
        ["ENVIRONMENT must be development or production, got 'staging'"],
    ),
    (
        "sqlite-synchronous",
        {},
        {"JOBSTATE_SQLITE_SYNCHRONOUS": "OFF"},
        ["JOBSTATE_SQLITE_SYNCHRONOUS"],
    ),
    (
        "history-retention",
        {},
        {"JOBSTATE_HISTORY_RETENTION": "a week"},
        ["JOBSTATE_HISTORY_RETENTION"],
    ),
]

GOOD: list[tuple[str, dict[str, str], Env]] = [
    ("production-loopback", {"listen": "127.0.0.1:50051"}, {"ENVIRONMENT": "production"}),
    ("production-localhost", {"listen": "localhost:50051"}, {"ENVIRONMENT": "production"}),
    (
        "production-public-with-token",
        {"listen": "0.0.0.0:50051"},
        {"ENVIRONMENT": "production", "JOBSTATE_API_TOKEN": TOKEN},
    ),
    ("development-public", {"listen": "0.0.0.0:50051"}, {"ENVIRONMENT": "development"}),
    (
        "development-short-token",
        {"listen": "0.0.0.0:50051"},
        {"ENVIRONMENT": "development", "JOBSTATE_API_TOKEN": "t0ken"},
    ),
    ("flag-beats-bad-listen-env", {"listen": "127.0.0.1:1"}, {"JOBSTATE_LISTEN": "nonsense"}),
    (
        "flag-beats-bad-database-env",
        {"database_url": DB},
        {"JOBSTATE_DATABASE_URL": "redis://127.0.0.1/0"},
    ),
    ("sqlite-synchronous-full", {}, {"JOBSTATE_SQLITE_SYNCHRONOUS": "full"}),
]


def config(flags: dict[str, str], env: Env) -> ServiceConfig:
    environ = {k: v for k, v in env.items() if v is not None}
    overrides: dict[str, Any] = {
        "listen": None,
        "database_url": None,
        "tls_cert": None,
        "tls_key": None,
    }
    overrides.update(flags)  # what the CLI passes: None for a flag not given
    if "database_url" not in flags and "JOBSTATE_DATABASE_URL" not in env:
        overrides["database_url"] = DB
    return ServiceConfig.from_env(environ, **overrides)


@pytest.mark.parametrize(
    ("flags", "env", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_configuration_names_the_variable(
    flags: dict[str, str], env: Env, expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        config(flags, env)
    message = str(info.value)
    assert "\n" not in message
    assert [part for part in expected if part not in message] == [], message


@pytest.mark.parametrize(("flags", "env"), [g[1:] for g in GOOD], ids=[g[0] for g in GOOD])
def test_good_configuration_is_accepted(flags: dict[str, str], env: Env) -> None:
    cfg = config(flags, env)
    assert cfg.listen == flags.get("listen", "127.0.0.1:50051")
    assert cfg.database_url == DB


def test_secrets_stay_out_of_repr() -> None:
    cfg = config({}, {"JOBSTATE_API_TOKEN": TOKEN})
    assert TOKEN not in repr(cfg)


# --- the real process ---------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'jobstate.db'}"


def _flags(flags: dict[str, str]) -> list[str]:
    return [arg for name, value in flags.items() for arg in (f"--{name.replace('_', '-')}", value)]


async def run_bad(
    spawn: SpawnFactory, db: str, flags: dict[str, str], env: Env
) -> tuple[int, list[str]]:
    """(exit code, stderr lines): 2 for bad configuration, 1 for a failed start."""
    args = _flags({"database_url": db} | flags)
    serve = await spawn(*args, env=env, listening=False)
    code = await serve.wait()
    return code, [line for line in serve.output if line.strip()]


async def test_bad_configuration_stops_the_process_with_one_clear_line(
    spawn: SpawnFactory, db: str
) -> None:
    cases: dict[str, tuple[dict[str, str], Env]] = {
        "bad listen address": ({"listen": "nonsense"}, {}),
        "bad database URL scheme": ({"database_url": "mysql+aiomysql://u@h/db"}, {}),
        "production, public, no token": ({"listen": "0.0.0.0:0"}, {"ENVIRONMENT": "production"}),
        "bad listen variable": ({}, {"JOBSTATE_LISTEN": "nonsense"}),
        "bad log level": ({"listen": "127.0.0.1:0"}, {"JOBSTATE_LOG_LEVEL": "loud"}),
    }
    results = await asyncio.gather(*(run_bad(spawn, db, f, e) for f, e in cases.values()))
    assert dict(zip(cases, results, strict=True)) == {
        "bad listen address": (
            2,
            ["jobstate serve: --listen must be host:port, got 'nonsense'"],
        ),
        "bad database URL scheme": (
            2,
            [
                "jobstate serve: --database-url must use one of sqlite+aiosqlite, "
                "postgresql+asyncpg, got 'mysql+aiomysql'"
            ],
        ),
        "production, public, no token": (
            2,
            [
                "jobstate serve: refusing to listen on non-loopback 0.0.0.0:0 in production "
                "without JOBSTATE_API_TOKEN"
            ],
        ),
        "bad listen variable": (
            2,
            ["jobstate serve: JOBSTATE_LISTEN must be host:port, got 'nonsense'"],
        ),
        "bad log level": (
            2,
            [
                "jobstate serve: JOBSTATE_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, "
                "got 'LOUD'"
            ],
        ),
    }


async def test_listen_address_not_on_this_host_stops_with_one_clear_line(
    spawn: SpawnFactory, db: str
) -> None:
    # TEST-NET-1 is never a local address, so binding fails: only a start can tell (exit 1).
    code, lines = await run_bad(spawn, db, {"listen": "192.0.2.1:50051"}, {})
    assert (code, len(lines)) == (1, 1), lines
    assert "192.0.2.1:50051" in lines[0]


async def test_unreachable_database_stops_with_a_clear_last_line(spawn: SpawnFactory) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+asyncpg://postgres:hunter2@127.0.0.1:{port}/jobstate"
    code, lines = await run_bad(spawn, url, {"listen": "127.0.0.1:0"}, {})
    # One line naming the store (never its password) and what the driver said; a failed
    # start, not bad configuration: exit 1.
    assert code == 1
    assert len(lines) == 1, lines
    shown = url.replace("hunter2", "***")
    assert lines[0].startswith(f"jobstate serve: cannot open the job store {shown}: "), lines
    # The event loop words it: asyncio "Connect call failed", uvloop "Connection refused".
    assert "Connect call failed" in lines[0] or "Connection refused" in lines[0], lines


async def run_good(spawn: SpawnFactory, flags: dict[str, str], env: Env) -> tuple[bool, int]:
    serve = await spawn(*_flags(flags), env=env)
    serve.send_signal(signal.SIGTERM)
    return serve.port > 0, await serve.wait()


async def test_good_configuration_starts(spawn: SpawnFactory, tmp_path: Path) -> None:
    # The offending parts fixed, the process starts (and stops cleanly on SIGTERM); the flag
    # beats the variable.
    cases: dict[str, tuple[dict[str, str], Env]] = {
        "production-public-with-token": (
            {"listen": "0.0.0.0:0"},
            {"ENVIRONMENT": "production", "JOBSTATE_API_TOKEN": TOKEN},
        ),
        "production-loopback-flags-beat-variables": (
            {"listen": "127.0.0.1:0"},
            {
                "ENVIRONMENT": "production",
                "JOBSTATE_LISTEN": "nonsense",
                "JOBSTATE_DATABASE_URL": "mysql+aiomysql://u@h/db",
            },
        ),
    }
    results = await asyncio.gather(
        *(
            run_good(
                spawn, {**flags, "database_url": f"sqlite+aiosqlite:///{tmp_path / name}"}, env
            )
            for name, (flags, env) in cases.items()
        )
    )
    assert dict(zip(cases, results, strict=True)) == dict.fromkeys(cases, (True, 0))
    assert existing(tmp_path, cases) == sorted(cases)  # each used the --database-url it was given


def existing(path: Path, names: Iterable[str]) -> list[str]:
    return sorted(name for name in names if (path / name).is_file())
