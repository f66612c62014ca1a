"""GatewayConfig.from_env: defaults, flags over variables, one-line errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, GatewayConfig

SECRETS = {"JOBSTATE_JWT_SECRET": "j" * 40, "JOBSTATE_CALLBACK_SECRET": "c" * 40}


def test_defaults_follow_the_contract(tmp_path: Path) -> None:
    config = GatewayConfig.from_env(SECRETS, data_dir=tmp_path)
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
    env = {**SECRETS, "GATEWAY_LISTEN": "0.0.0.0:9000", "JOBSTATE_TARGET": "a:1"}
    config = GatewayConfig.from_env(env, listen="127.0.0.1:7000", jobstate_target="b:2")
    assert (config.host, config.port, config.jobstate_target) == ("127.0.0.1", 7000, "b:2")
    config = GatewayConfig.from_env(env)
    assert (config.host, config.port, config.jobstate_target) == ("0.0.0.0", 9000, "a:1")


def test_runpod_endpoint_id_expands_and_origins_parse() -> None:
    env = {
        **SECRETS,
        "RUNPOD_ENDPOINT": "abc123",
        "RUNPOD_API_KEY": "k",
        "GATEWAY_ALLOWED_ORIGINS": "https://a.example, https://b.example:8443/",
        "GATEWAY_PUBLIC_URL": "https://gw.example/",
    }
    config = GatewayConfig.from_env(env)
    assert config.runpod_endpoint_url == "https://api.runpod.ai/v2/abc123"
    assert config.allowed_origins == ("https://a.example", "https://b.example:8443")
    assert config.resolved_public_url(1) == "https://gw.example"


def test_secrets_never_appear_in_repr() -> None:
    env = {
        **SECRETS,
        "RUNPOD_API_KEY": "rk-secret",
        "RUNPOD_ENDPOINT_URL": "http://r",
        "R2_SECRET_ACCESS_KEY": "s3-secret",
        "JOBSTATE_API_TOKEN": "api-secret",
    }
    text = repr(GatewayConfig.from_env(env))
    for secret in ("j" * 40, "c" * 40, "rk-secret", "s3-secret", "api-secret"):
        assert secret not in text


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "JOBSTATE_JWT_SECRET"),
        ({"JOBSTATE_JWT_SECRET": "x"}, "JOBSTATE_CALLBACK_SECRET"),
        ({**SECRETS, "ENVIRONMENT": "staging"}, "ENVIRONMENT"),
        ({**SECRETS, "GATEWAY_LISTEN": "8787"}, "GATEWAY_LISTEN"),
        ({**SECRETS, "GATEWAY_LISTEN": "h:99999"}, "GATEWAY_LISTEN"),
        ({**SECRETS, "GATEWAY_PUBLIC_URL": "ftp://x"}, "GATEWAY_PUBLIC_URL"),
        ({**SECRETS, "GATEWAY_ALLOWED_ORIGINS": "https://a/path"}, "GATEWAY_ALLOWED_ORIGINS"),
        ({**SECRETS, "RUNPOD_ENDPOINT_URL": "not a url"}, "RUNPOD_ENDPOINT_URL"),
        ({**SECRETS, "RUNPOD_ENDPOINT_URL": "https://r.example"}, "RUNPOD_API_KEY"),
        ({**SECRETS, "R2_ENDPOINT_URL": "r2"}, "R2_ENDPOINT_URL"),
        ({**SECRETS, "GATEWAY_RPC_TIMEOUT": "soon"}, "GATEWAY_RPC_TIMEOUT"),
    ],
)
def test_bad_configuration_names_the_variable(env: dict, variable: str) -> None:
    with pytest.raises(ConfigError) as error:
        GatewayConfig.from_env(env)
    assert variable in str(error.value) and "\n" not in str(error.value)


def test_development_makes_secrets_once_and_keeps_them(tmp_path: Path) -> None:
    env = {"ENVIRONMENT": "development"}
    first = GatewayConfig.from_env(env, data_dir=tmp_path)
    again = GatewayConfig.from_env(env, data_dir=tmp_path)
    assert first.jwt_secret == again.jwt_secret and len(first.jwt_secret) >= 32
    assert first.callback_secret == again.callback_secret != first.jwt_secret
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o077 == 0
    given = GatewayConfig.from_env({**env, **SECRETS}, data_dir=tmp_path)
    assert given.jwt_secret == "j" * 40  # a variable still wins in development
