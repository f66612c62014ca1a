"""The service's configuration: one frozen dataclass built from the environment, flags on top.

Also the rules every process shares (`check_environment`, `check_secret`, `ConfigError`): bad
configuration is one line naming the flag or variable that was used, and exits 2.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/jobstate.db"
SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
ENVIRONMENTS = ("development", "production")
# HS256 keys and bearer tokens shorter than this are guessable offline; RFC 7518 asks for at
# least the hash size (256 bits) for HMAC keys.
MIN_SECRET_BYTES = 32
T = TypeVar("T")
# The flag that sets each field, for messages: an error names what the operator typed.
FLAGS = {
    "listen": "--listen",
    "database_url": "--database-url",
    "tls_cert": "--tls-cert",
    "tls_key": "--tls-key",
}
TLS_VARIABLES = ("JOBSTATE_TLS_CERT", "JOBSTATE_TLS_KEY")


class ConfigError(ValueError):
    """Bad configuration; the message names the flag or variable and is printed as one line."""


def check_environment(value: str) -> None:
    if value not in ENVIRONMENTS:
        raise ConfigError(f"ENVIRONMENT must be development or production, got {value!r}")


def check_secret(variable: str, value: str) -> None:
    """Production's rule for secrets and tokens: at least MIN_SECRET_BYTES bytes of UTF-8.
    The message gives the length, never the value."""
    size = len(value.encode())
    if size < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{variable} must be at least {MIN_SECRET_BYTES} bytes in production, got {size}"
        )


def parse_listen(value: str, name: str) -> tuple[str, int]:
    """`host:port` (IPv6 hosts in brackets) → (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{name} must be host:port, got {value!r}")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _number(environ: Mapping[str, str], name: str, default: float, minimum: float = 0) -> float:
    raw = environ.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def _flag(flag: T | None, variable: T) -> T:
    """A flag's value when one was given, else the variable's; the variable is read, and so
    checked, either way."""
    return variable if flag is None else flag


def _switch(environ: Mapping[str, str], name: str) -> bool:
    raw = environ.get(name, "")
    if raw not in ("", "0", "1"):
        raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")
    return raw == "1"


@dataclass(frozen=True)
class ServiceConfig:
    listen: str = "127.0.0.1:50051"
    database_url: str = DEFAULT_DATABASE_URL
    environment: str = "production"
    api_token: str = field(default="", repr=False)
    sqlite_synchronous: str = "NORMAL"
    tls_cert: str = ""
    tls_key: str = ""
    history_retention: float = 604800.0
    job_retention: float = 0.0  # 0: finished jobs are kept forever
    max_progress_events: int = 1000
    max_watch_streams: int = 10000
    retention_interval: float = 300.0
    migrate: bool = False  # upgrade a database that is behind (else refuse it)
    # Fields set by a flag (field name -> flag), so that errors name the flag.
    flags: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def _name(self, field_name: str, variable: str) -> str:
        return self.flags.get(field_name, variable)

    def __post_init__(self) -> None:
        host, _ = parse_listen(self.listen, self._name("listen", "JOBSTATE_LISTEN"))
        self._check_database_url()
        check_environment(self.environment)
        if self.sqlite_synchronous not in ("NORMAL", "FULL"):
            raise ConfigError("JOBSTATE_SQLITE_SYNCHRONOUS must be NORMAL or FULL")
        self._check_tls()
        if self.environment == "production":
            if self.api_token:
                check_secret("JOBSTATE_API_TOKEN", self.api_token)
            elif not is_loopback(host):
                raise ConfigError(
                    f"refusing to listen on non-loopback {self.listen} in production without "
                    "JOBSTATE_API_TOKEN"
                )

    def _check_database_url(self) -> None:
        name = self._name("database_url", "JOBSTATE_DATABASE_URL")
        try:
            url = make_url(self.database_url)
        except ArgumentError:
            raise ConfigError(f"{name} is not a database URL: {self.database_url!r}") from None
        if url.drivername not in SUPPORTED_DRIVERS:
            raise ConfigError(
                f"{name} must use one of {', '.join(SUPPORTED_DRIVERS)}, got {url.drivername!r}"
            )
        if url.drivername.startswith("sqlite") and url.database in (None, "", ":memory:"):
            raise ConfigError(f"{name} must name a SQLite file, not memory")

    def _check_tls(self) -> None:
        from_flags = "tls_cert" in self.flags or "tls_key" in self.flags
        cert, key = ("--tls-cert", "--tls-key") if from_flags else TLS_VARIABLES
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError(f"{cert} and {key} must be given together")
        for name, path in ((cert, self.tls_cert), (key, self.tls_key)):
            if path and not Path(path).is_file():
                raise ConfigError(f"{name} {path!r} is not a readable file")

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        listen: str | None = None,
        database_url: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        migrate: bool | None = None,
    ) -> ServiceConfig:
        """Variables from `environ`; flags (the keyword arguments that are not None) win."""
        given = {
            "listen": listen,
            "database_url": database_url,
            "tls_cert": tls_cert,
            "tls_key": tls_key,
        }
        return cls(
            listen=_flag(listen, environ.get("JOBSTATE_LISTEN") or cls.listen),
            database_url=_flag(
                database_url, environ.get("JOBSTATE_DATABASE_URL") or DEFAULT_DATABASE_URL
            ),
            environment=environ.get("ENVIRONMENT") or "production",
            api_token=environ.get("JOBSTATE_API_TOKEN", ""),
            sqlite_synchronous=(environ.get("JOBSTATE_SQLITE_SYNCHRONOUS") or "NORMAL").upper(),
            tls_cert=_flag(tls_cert, environ.get("JOBSTATE_TLS_CERT", "")),
            tls_key=_flag(tls_key, environ.get("JOBSTATE_TLS_KEY", "")),
            history_retention=_number(environ, "JOBSTATE_HISTORY_RETENTION", 604800.0),
            job_retention=_number(environ, "JOBSTATE_JOB_RETENTION", 0.0),
            max_progress_events=int(_number(environ, "JOBSTATE_MAX_PROGRESS_EVENTS", 1000, 1)),
            max_watch_streams=int(_number(environ, "JOBSTATE_MAX_WATCH_STREAMS", 10000, 1)),
            retention_interval=_number(environ, "JOBSTATE_RETENTION_INTERVAL", 300.0, 0.01),
            migrate=_flag(migrate, _switch(environ, "JOBSTATE_MIGRATE")),
            flags={name: FLAGS[name] for name, value in given.items() if value is not None},
        )
