"""GatewayConfig.from_env: defaults, flags over variables, one-line errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, GatewayConfig
from gateway.reconcile import ReconcileConfig

SECRETS = {"JOBSTATE_JWT_SECRET": "j" * 40, "JOBSTATE_CALLBACK_SECRET": "c" * 40}
# Production without RunPod: the simulated worker, said to be meant.
SIMULATED = {**SECRETS, "GATEWAY_SIMULATED_WORKER": "1"}


def test_defaults_follow_the_contract(tmp_path: Path) -> None:
    config = GatewayConfig.from_env(SIMULATED, data_dir=tmp_path)
    assert (config.host, config.port, config.jobstate_target) == (
        "127.0.0.1",
        8787,
        "127.0.0.1:50051",
    )
    assert (config.environment, config.output_prefix, config.r2_bucket) == (
        "production",
        "exports/",
        "reel-ballers-users",
    )
    assert config.resolved_public_url(8787) == "http://127.0.0.1:8787"
    assert config.resolved_origins("http://127.0.0.1:8787") == {"http://127.0.0.1:8787"}
    assert config.runpod_endpoint_url == ""  # the simulated worker
    assert not list(tmp_path.iterdir())  # production never writes secrets


def test_flags_win_over_variables() -> None:
    env = {**SIMULATED, "GATEWAY_LISTEN": "0.0.0.0:9000", "JOBSTATE_TARGET": "a:1"}
    config = GatewayConfig.from_env(env, listen="127.0.0.1:7000", jobstate_target="b:2")
    assert (config.host, config.port, config.jobstate_target) == ("127.0.0.1", 7000, "b:2")
    config = GatewayConfig.from_env(env)
    assert (config.host, config.port, config.jobstate_target) == ("0.0.0.0", 9000, "a:1")


def test_runpod_endpoint_id_expands_and_origins_parse() -> None:
    env = {
        **SIMULATED,
        "RUNPOD_ENDPOINT": "abc123",
        "RUNPOD_API_KEY": "k",
        "GATEWAY_ALLOWED_ORIGINS": "https://a.example, https://b.example:8443/",
        "GATEWAY_PUBLIC_URL": "https://gw.example/",
    }
    config = GatewayConfig.from_env(env)
    assert config.runpod_endpoint_url == "https://api.runpod.ai/v2/abc123"
    assert config.allowed_origins == ("https://a.example", "https://b.example:8443")
    assert config.resolved_public_url(1) == "https://gw.example"


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("exports", "must end with '/' (a folder, e.g. exports/)"),
        ("/exports/", "must not start with '/'"),
        ("exports/../", "has an empty, '.' or '..' path segment"),
        ("./exports/", "has an empty, '.' or '..' path segment"),
        ("exports//x/", "has an empty, '.' or '..' path segment"),
        ("ex\\ports/", "contains a control character or a backslash"),
        ("ex\tports/", "contains a control character or a backslash"),
    ],
)
def test_output_prefix_is_a_plain_folder_for_gateway_and_reconciler(
    prefix: str, problem: str
) -> None:
    """Every job's outputs live under `{R2_OUTPUT_PREFIX}{job_id}/`: a prefix that leaves its
    folder once normalised, or that two processes would read differently, is refused by both
    commands that read it, with the same words."""
    expected = f"R2_OUTPUT_PREFIX {problem}, got {prefix!r}"
    for read in (GatewayConfig.from_env, ReconcileConfig.from_env):
        with pytest.raises(ConfigError) as error:
            read({**SIMULATED, "R2_OUTPUT_PREFIX": prefix})
        assert str(error.value) == expected


def test_output_prefix_is_read_alike_by_gateway_and_reconciler() -> None:
    env = {**SIMULATED, "R2_OUTPUT_PREFIX": " renders/reels/ "}
    assert GatewayConfig.from_env(env).output_prefix == "renders/reels/"
    assert ReconcileConfig.from_env(env).output_prefix == "renders/reels/"


def test_secrets_never_appear_in_repr() -> None:
    env = {
        **SECRETS,
        "RUNPOD_API_KEY": "rk-secret",
        "RUNPOD_ENDPOINT_URL": "http://r",
        "R2_SECRET_ACCESS_KEY": "s3-secret",
        "JOBSTATE_API_TOKEN": "a" * 40,
    }
    text = repr(GatewayConfig.from_env(env))
    for secret in ("j" * 40, "c" * 40, "rk-secret", "s3-secret", "a" * 40):
        assert secret not in text


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "JOBSTATE_JWT_SECRET"),
        ({"JOBSTATE_JWT_SECRET": "x" * 40}, "JOBSTATE_CALLBACK_SECRET"),
        ({**SIMULATED, "ENVIRONMENT": "staging"}, "ENVIRONMENT"),
        ({**SIMULATED, "GATEWAY_LISTEN": "8787"}, "GATEWAY_LISTEN"),
        ({**SIMULATED, "GATEWAY_LISTEN": "h:99999"}, "GATEWAY_LISTEN"),
        ({**SIMULATED, "GATEWAY_PUBLIC_URL": "ftp://x"}, "GATEWAY_PUBLIC_URL"),
        ({**SIMULATED, "GATEWAY_ALLOWED_ORIGINS": "https://a/path"}, "GATEWAY_ALLOWED_ORIGINS"),
        ({**SIMULATED, "RUNPOD_ENDPOINT_URL": "not a url"}, "RUNPOD_ENDPOINT_URL"),
        ({**SIMULATED, "RUNPOD_ENDPOINT_URL": "https://r.example"}, "RUNPOD_API_KEY"),
        ({**SIMULATED, "R2_ENDPOINT_URL": "r2"}, "R2_ENDPOINT_URL"),
        ({**SIMULATED, "GATEWAY_RPC_TIMEOUT": "soon"}, "GATEWAY_RPC_TIMEOUT"),
        ({**SIMULATED, "GATEWAY_SIMULATED_WORKER": "yes"}, "GATEWAY_SIMULATED_WORKER"),
    ],
)
def test_bad_configuration_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as error:
        GatewayConfig.from_env(env)
    assert variable in str(error.value) and "\n" not in str(error.value)


WEAK = "w" * 31  # one byte short


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {**SIMULATED, "JOBSTATE_JWT_SECRET": WEAK},
            "JOBSTATE_JWT_SECRET must be at least 32 bytes in production, got 31",
        ),
        (
            {**SIMULATED, "JOBSTATE_JWT_SECRET": "é" * 15},  # 15 characters, 30 bytes
            "JOBSTATE_JWT_SECRET must be at least 32 bytes in production, got 30",
        ),
        (
            {**SIMULATED, "JOBSTATE_CALLBACK_SECRET": WEAK},
            "JOBSTATE_CALLBACK_SECRET must be at least 32 bytes in production, got 31",
        ),
        (
            {**SIMULATED, "JOBSTATE_API_TOKEN": "t0ken"},
            "JOBSTATE_API_TOKEN must be at least 32 bytes in production, got 5",
        ),
        (
            SECRETS,
            "RUNPOD_ENDPOINT_URL is required in production; set GATEWAY_SIMULATED_WORKER=1 "
            "to run the simulated worker instead",
        ),
        (
            {**SECRETS, "GATEWAY_SIMULATED_WORKER": "0"},
            "RUNPOD_ENDPOINT_URL is required in production; set GATEWAY_SIMULATED_WORKER=1 "
            "to run the simulated worker instead",
        ),
    ],
)
def test_production_refuses_weak_secrets_and_an_unmeant_simulated_worker(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        GatewayConfig.from_env(env)
    assert str(error.value).endswith(message)
    assert WEAK not in str(error.value) and "t0ken" not in str(error.value)


@pytest.mark.parametrize(
    "env",
    [
        SIMULATED,
        {**SECRETS, "RUNPOD_ENDPOINT_URL": "https://r.example", "RUNPOD_API_KEY": "k"},
        {**SECRETS, "RUNPOD_ENDPOINT": "abc123", "RUNPOD_API_KEY": "k"},
        {**SIMULATED, "JOBSTATE_API_TOKEN": "t" * 32},
        {**SIMULATED, "JOBSTATE_JWT_SECRET": "é" * 16},  # 32 bytes
    ],
)
def test_production_starts_with_strong_secrets_and_a_worker(env: dict[str, str]) -> None:
    config = GatewayConfig.from_env(env)
    assert config.simulated_worker == (env.get("GATEWAY_SIMULATED_WORKER") == "1")


def test_development_accepts_short_secrets_and_the_simulated_worker(tmp_path: Path) -> None:
    env = {"ENVIRONMENT": "development", "JOBSTATE_JWT_SECRET": "x", "JOBSTATE_API_TOKEN": "t"}
    config = GatewayConfig.from_env(env, data_dir=tmp_path)
    assert (config.jwt_secret, config.runpod_endpoint_url, config.simulated_worker) == (
        "x",
        "",
        False,
    )


def test_development_makes_secrets_once_and_keeps_them(tmp_path: Path) -> None:
    env = {"ENVIRONMENT": "development"}
    first = GatewayConfig.from_env(env, data_dir=tmp_path)
    again = GatewayConfig.from_env(env, data_dir=tmp_path)
    assert first.jwt_secret == again.jwt_secret and len(first.jwt_secret) >= 32
    assert first.callback_secret == again.callback_secret != first.jwt_secret
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o077 == 0
    given = GatewayConfig.from_env({**env, **SECRETS}, data_dir=tmp_path)
    assert given.jwt_secret == "j" * 40  # a variable still wins in development
