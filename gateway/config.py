"""The gateway's configuration: one frozen dataclass built from the environment, flags on top.

`GatewayConfig.from_env(environ, listen=..., jobstate_target=...)` validates everything at once
and raises `ConfigError` with one line naming the variable (or the flag, when one was used);
nothing reads the environment at import time. In development, missing secrets are generated
once and kept under `data_dir`, so a restart keeps issued tokens valid. In production, secrets
and the service token must be at least 32 bytes, and an empty RUNPOD_ENDPOINT_URL needs
GATEWAY_SIMULATED_WORKER=1 to say the simulated worker is meant.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from gateway.endpoints import check_runpod, http_url, runpod_endpoint_url
from gateway.outputs import root_problem
from gateway.target import FORMS, is_target
from jobstate.config import ConfigError, check_environment, check_secret

__all__ = ["ConfigError", "GatewayConfig", "dev_secret", "parse_hostport"]

DEFAULT_LISTEN = "127.0.0.1:8787"
DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_BUCKET = "reel-ballers-users"
MAX_LIMIT = 1_000_000


def parse_hostport(value: str, variable: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{variable} must be host:port, got {value!r}")
    return host, int(port)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _seconds(environ: Mapping[str, str], variable: str, default: float) -> float:
    raw = environ.get(variable, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{variable} must be a number of seconds, got {raw!r}") from None
    if not 0 < value < 86400:
        raise ConfigError(f"{variable} must be between 0 and 86400 seconds, got {raw!r}")
    return value


def _switch(environ: Mapping[str, str], variable: str) -> bool:
    raw = environ.get(variable, "")
    if raw not in ("", "0", "1"):
        raise ConfigError(f"{variable} must be 1 or 0, got {raw!r}")
    return raw == "1"


def _count(environ: Mapping[str, str], variable: str, default: int) -> int:
    raw = environ.get(variable, "")
    if not raw:
        return default
    if not raw.isdigit() or len(raw) > 9:  # the range is checked in __post_init__
        raise ConfigError(f"{variable} must be a whole number from 1 to {MAX_LIMIT}, got {raw!r}")
    return int(raw)


def dev_secret(data_dir: Path, name: str) -> str:
    """A random secret generated once and kept in `data_dir/name` (mode 0600)."""
    path = data_dir / name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything the gateway process needs; see DESIGN.md's variable table."""

    jwt_secret: str = field(repr=False)
    callback_secret: str = field(repr=False)
    # Empty: a token's `aud` / `iss` is not required, and any value is accepted.
    jwt_audience: str = ""
    jwt_issuer: str = ""
    host: str = "127.0.0.1"
    port: int = 8787
    jobstate_target: str = DEFAULT_TARGET
    environment: str = "production"
    # Empty: http://<listen address>, resolved once the port is bound.
    public_url: str = ""
    # Empty: the origin of the public URL.
    allowed_origins: tuple[str, ...] = ()
    output_prefix: str = "exports/"
    runpod_endpoint_url: str = ""
    runpod_api_key: str = field(default="", repr=False)
    # Without RunPod in production, the simulated worker runs only when this says it is meant.
    simulated_worker: bool = False
    r2_endpoint_url: str = ""
    r2_access_key_id: str = field(default="", repr=False)
    r2_secret_access_key: str = field(default="", repr=False)
    r2_bucket: str = DEFAULT_BUCKET
    api_token: str = field(default="", repr=False)
    # PEM CA bundle that signed jobstate's TLS certificate; empty: plaintext gRPC.
    tls_ca: str = ""
    rpc_timeout: float = 5.0
    runpod_timeout: float = 10.0
    ws_heartbeat: float = 30.0
    presign_expires: int = 3600
    sim_step_seconds: float = 0.3
    # Abuse limits (DESIGN.md: generous defaults); each is per gateway process, except the
    # unfinished-jobs count, which the service answers for every gateway at once.
    max_unfinished_jobs_per_user: int = 100
    max_starts_per_minute: int = 300
    max_sockets_per_user: int = 200
    max_sockets_per_job: int = 1000
    max_subscriptions_per_socket: int = 1000
    # Development: secrets and (without R2) the simulated worker's outputs live here.
    data_dir: str = "data"
    # Fields set by a flag (field name -> flag), so that errors name the flag.
    flags: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_environment(self.environment)
        self._check_secrets()
        target_name = self.flags.get("jobstate_target", "JOBSTATE_TARGET")
        if not is_target(self.jobstate_target):
            raise ConfigError(f"{target_name} must be {FORMS}, got {self.jobstate_target!r}")
        if self.tls_ca and not Path(self.tls_ca).is_file():
            raise ConfigError(f"JOBSTATE_TLS_CA {self.tls_ca!r} is not a readable file")
        if not self.output_prefix:
            raise ConfigError("R2_OUTPUT_PREFIX must not be empty")
        if problem := root_problem(self.output_prefix):
            raise ConfigError(f"R2_OUTPUT_PREFIX {problem}, got {self.output_prefix!r}")
        if self.public_url:
            http_url(self.public_url, "GATEWAY_PUBLIC_URL")
        for origin in self.allowed_origins:
            if _origin(origin) != origin or not urlsplit(origin).netloc:
                raise ConfigError(
                    f"GATEWAY_ALLOWED_ORIGINS entries must be scheme://host[:port], got {origin!r}"
                )
        check_runpod(self.runpod_endpoint_url, self.runpod_api_key)
        if not self.runpod_endpoint_url and not self.development and not self.simulated_worker:
            raise ConfigError(
                "RUNPOD_ENDPOINT_URL is required in production; set GATEWAY_SIMULATED_WORKER=1 "
                "to run the simulated worker instead"
            )
        if self.r2_endpoint_url:
            http_url(self.r2_endpoint_url, "R2_ENDPOINT_URL")
        if not self.r2_bucket:
            raise ConfigError("R2_BUCKET must not be empty")
        for variable, value in self._limits():
            if not 1 <= value <= MAX_LIMIT:
                raise ConfigError(f"{variable} must be from 1 to {MAX_LIMIT}, got {value}")

    def _check_secrets(self) -> None:
        required = (
            ("JOBSTATE_JWT_SECRET", self.jwt_secret),
            ("JOBSTATE_CALLBACK_SECRET", self.callback_secret),
        )
        for variable, value in required:
            if not value:  # development generates them in from_env
                raise ConfigError(f"{variable} is required in production")
            if not self.development:
                check_secret(variable, value)
        if self.api_token and not self.development:
            check_secret("JOBSTATE_API_TOKEN", self.api_token)

    def _limits(self) -> tuple[tuple[str, int], ...]:
        return (
            ("GATEWAY_MAX_UNFINISHED_JOBS_PER_USER", self.max_unfinished_jobs_per_user),
            ("GATEWAY_MAX_STARTS_PER_MINUTE", self.max_starts_per_minute),
            ("GATEWAY_MAX_SOCKETS_PER_USER", self.max_sockets_per_user),
            ("GATEWAY_MAX_SOCKETS_PER_JOB", self.max_sockets_per_job),
            ("GATEWAY_MAX_SUBSCRIPTIONS_PER_SOCKET", self.max_subscriptions_per_socket),
        )

    @property
    def development(self) -> bool:
        return self.environment == "development"

    @property
    def storage_configured(self) -> bool:
        return bool(self.r2_endpoint_url)

    def resolved_public_url(self, bound_port: int) -> str:
        if self.public_url:
            return self.public_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"
        return f"http://{host}:{bound_port}"

    def resolved_origins(self, public_url: str) -> frozenset[str]:
        if self.allowed_origins:
            return frozenset(self.allowed_origins)
        origins = {_origin(public_url)}
        if self.development:  # the demo page is opened as localhost as often as 127.0.0.1
            origins |= {o.replace("127.0.0.1", "localhost") for o in origins}
        return frozenset(origins)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        listen: str | None = None,
        jobstate_target: str | None = None,
        data_dir: Path | str = "data",
    ) -> GatewayConfig:
        """Build and validate the configuration; flags (keyword arguments) win over variables."""
        env = {k: v.strip() for k, v in environ.items()}
        environment = env.get("ENVIRONMENT") or "production"
        listen_var = "--listen" if listen else "GATEWAY_LISTEN"
        host, port = parse_hostport(
            listen or env.get("GATEWAY_LISTEN") or DEFAULT_LISTEN, listen_var
        )
        jwt_secret = env.get("JOBSTATE_JWT_SECRET", "")
        callback_secret = env.get("JOBSTATE_CALLBACK_SECRET", "")
        if environment == "development":
            jwt_secret = jwt_secret or dev_secret(Path(data_dir), "jwt_secret")
            callback_secret = callback_secret or dev_secret(Path(data_dir), "callback_secret")
        origins = tuple(
            o.strip().rstrip("/") for o in env.get("GATEWAY_ALLOWED_ORIGINS", "").split(",")
        )
        return cls(
            jwt_secret=jwt_secret,
            callback_secret=callback_secret,
            jwt_audience=env.get("JOBSTATE_JWT_AUDIENCE", ""),
            jwt_issuer=env.get("JOBSTATE_JWT_ISSUER", ""),
            host=host,
            port=port,
            jobstate_target=jobstate_target or env.get("JOBSTATE_TARGET") or DEFAULT_TARGET,
            environment=environment,
            public_url=env.get("GATEWAY_PUBLIC_URL", "").rstrip("/"),
            allowed_origins=tuple(o for o in origins if o),
            output_prefix=env.get("R2_OUTPUT_PREFIX") or "exports/",
            runpod_endpoint_url=runpod_endpoint_url(env),
            runpod_api_key=env.get("RUNPOD_API_KEY", ""),
            simulated_worker=_switch(env, "GATEWAY_SIMULATED_WORKER"),
            r2_endpoint_url=env.get("R2_ENDPOINT_URL", ""),
            r2_access_key_id=env.get("R2_ACCESS_KEY_ID", ""),
            r2_secret_access_key=env.get("R2_SECRET_ACCESS_KEY", ""),
            r2_bucket=env.get("R2_BUCKET") or DEFAULT_BUCKET,
            api_token=env.get("JOBSTATE_API_TOKEN", ""),
            tls_ca=env.get("JOBSTATE_TLS_CA", ""),
            rpc_timeout=_seconds(env, "GATEWAY_RPC_TIMEOUT", 5.0),
            runpod_timeout=_seconds(env, "RUNPOD_TIMEOUT", 10.0),
            ws_heartbeat=_seconds(env, "GATEWAY_WS_HEARTBEAT", 30.0),
            sim_step_seconds=_seconds(env, "SIMWORKER_STEP_SECONDS", 0.3),
            max_unfinished_jobs_per_user=_count(env, "GATEWAY_MAX_UNFINISHED_JOBS_PER_USER", 100),
            max_starts_per_minute=_count(env, "GATEWAY_MAX_STARTS_PER_MINUTE", 300),
            max_sockets_per_user=_count(env, "GATEWAY_MAX_SOCKETS_PER_USER", 200),
            max_sockets_per_job=_count(env, "GATEWAY_MAX_SOCKETS_PER_JOB", 1000),
            max_subscriptions_per_socket=_count(env, "GATEWAY_MAX_SUBSCRIPTIONS_PER_SOCKET", 1000),
            data_dir=str(data_dir),
            flags={"jobstate_target": "--jobstate-target"} if jobstate_target else {},
        )
