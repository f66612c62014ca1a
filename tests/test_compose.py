"""docker-compose.yml against the real CLI and configuration (no Docker engine needed).

Every jobstate service's command must parse with `jobstate_cli.main._parser()`, every variable it
sets must be one the code reads (names collected from the source), and the configuration the
code builds from that environment must be the intended one: replicas on the compose
PostgreSQL, gateways on both replicas and on MinIO's bucket, callbacks through the proxy.

It is a production topology (DESIGN.md, "Operational rules"): every process runs
ENVIRONMENT=production, every secret is required (`${VAR:?}`) and has no default, and only the
proxy and MinIO's S3 API are published, on 127.0.0.1 unless BIND says otherwise.
`.env.example` names exactly the variables the file reads, with no secret in it. The file is
read as compose would with that `.env` filled in by an operator (secrets generated here).
"""

from __future__ import annotations

import re
import secrets
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from gateway.config import GatewayConfig
from gateway.reconcile import ReconcileConfig
from jobstate.config import ServiceConfig
from jobstate_cli.main import _parser

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
# Compose's ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}.
_INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?)([-?])([^}]*))?\}")
# Variables whose values are credentials: never a default, never a literal.
_CREDENTIAL = re.compile(r"SECRET|PASSWORD|TOKEN|API_KEY|ACCESS_KEY|ROOT_USER")
REQUIRED = {
    "POSTGRES_PASSWORD", "JOBSTATE_API_TOKEN", "JOBSTATE_JWT_SECRET",
    "JOBSTATE_CALLBACK_SECRET", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD",
}  # fmt: skip
# A variable name read from an environment mapping: environ.get("X"), env["X"],
# _number(environ, "X", ...), _seconds(env, "X", ...), os.environ.get("X").
_READ = re.compile(r"\b(?:environ|env)\b[^\"\n]*\"([A-Z][A-Z0-9_]{2,})\"")

# Which source files each command's process reads its environment in.
SOURCES = {
    "serve": ["jobstate/config.py", "jobstate/logs.py"],
    "gateway": [*(str(p.relative_to(REPO)) for p in (REPO / "gateway").glob("*.py"))],
    "reconcile": ["gateway/reconcile.py", "gateway/endpoints.py", "jobstate/logs.py"],
}
SOURCES["gateway"] = [s for s in SOURCES["gateway"] if s != "gateway/reconcile.py"]
SOURCES["gateway"].append("jobstate/logs.py")


def read_variables(paths: Iterable[str]) -> set[str]:
    names: set[str] = set()
    for path in paths:
        names |= set(_READ.findall((REPO / path).read_text()))
    return names


class Refused(Exception):
    """Compose would refuse to start: a required variable (`${NAME:?}`) is unset or empty."""


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """What compose makes of `value` with `env` as its .env file, and `$$` → `$`."""
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, colon, kind, argument = match.groups()
        given = env.get(name)
        missing = given is None or (colon == ":" and given == "")
        if kind == "?" and missing:
            raise Refused(f"{name}: {argument}")
        return argument if kind == "-" and missing else given or ""

    return _INTERPOLATION.sub(substitute, value).replace("$$", "$")


def env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines())
    return {name: value for name, value in (p for p in pairs if len(p) == 2)}


def operator_env(**extra: str) -> dict[str, str]:
    """.env.example with every required secret filled in the way it tells the operator to."""
    env = env_example()
    env.update({name: secrets.token_hex(32) for name in REQUIRED})
    env["MINIO_ROOT_USER"] = "jobstate-admin"
    return {**env, "GATEWAY_SIMULATED_WORKER": "1", **extra}


def raw_compose() -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load(COMPOSE.read_text()))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return cast(dict[str, Any], interpolate(raw_compose(), operator_env()))


def jobstate_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if (service.get("command") or [None])[0] == "jobstate"
    }


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment must be a mapping"
    return {key: str(value) for key, value in env.items()}


def service_config(service: dict[str, Any]) -> ServiceConfig:
    args = _parser().parse_args(service["command"][1:])
    return ServiceConfig.from_env(
        environment(service),
        listen=args.listen,
        database_url=args.database_url,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )


def gateway_config(service: dict[str, Any], tmp_path: Path) -> GatewayConfig:
    args = _parser().parse_args(service["command"][1:])
    return GatewayConfig.from_env(
        environment(service),
        listen=args.listen,
        jobstate_target=args.jobstate_target,
        data_dir=tmp_path,
    )


def by_command(compose: dict[str, Any], command: str) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in jobstate_services(compose).items() if s["command"][1] == command}


def test_the_variable_scan_finds_the_contract_variables() -> None:
    found = read_variables({p for paths in SOURCES.values() for p in paths})
    contract = {
        "JOBSTATE_DATABASE_URL", "JOBSTATE_LISTEN", "GATEWAY_LISTEN", "JOBSTATE_TARGET",
        "JOBSTATE_JWT_SECRET", "JOBSTATE_CALLBACK_SECRET", "R2_OUTPUT_PREFIX",
        "GATEWAY_PUBLIC_URL", "RUNPOD_ENDPOINT_URL", "RUNPOD_API_KEY", "RUNPOD_ENDPOINT",
        "R2_ENDPOINT_URL", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY", "R2_BUCKET",
        "GATEWAY_ALLOWED_ORIGINS", "JOBSTATE_API_TOKEN", "JOBSTATE_STALE_AFTER",
        "JOBSTATE_RECONCILE_INTERVAL", "JOBSTATE_HISTORY_RETENTION", "ENVIRONMENT",
    }  # fmt: skip
    assert contract <= found, sorted(contract - found)


def test_every_jobstate_command_parses_with_the_real_cli(compose: dict[str, Any]) -> None:
    services = jobstate_services(compose)
    commands = sorted(s["command"][1] for s in services.values())
    assert commands == ["gateway", "gateway", "reconcile", "serve", "serve"]
    for name, service in services.items():
        try:
            _parser().parse_args(service["command"][1:])
        except SystemExit:
            pytest.fail(f"{name}: `{' '.join(service['command'])}` does not parse")


def test_every_variable_set_is_one_the_code_reads(compose: dict[str, Any]) -> None:
    unknown = {}
    for name, service in jobstate_services(compose).items():
        known = read_variables(SOURCES[service["command"][1]])
        extra = set(environment(service)) - known
        if extra:
            unknown[name] = sorted(extra)
    assert unknown == {}


def test_replicas_share_the_compose_postgres(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]["environment"]
    replicas = by_command(compose, "serve")
    assert len(replicas) == 2
    for service in replicas.values():
        config = service_config(service)
        url = make_url(config.database_url)
        assert (url.drivername, url.host, url.port) == ("postgresql+asyncpg", "postgres", 5432)
        assert (url.username, url.password, url.database) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            postgres["POSTGRES_DB"],
        )
        assert config.listen == "0.0.0.0:50051"
        assert config.environment == "production"
        assert config.api_token  # required to listen beyond loopback in production


def replica_target(compose: dict[str, Any]) -> str:
    """The one dns: target naming every replica: the network alias they all share."""
    replicas = by_command(compose, "serve").values()
    aliases = [set(s["networks"]["jobstate"]["aliases"]) for s in replicas]
    (alias,) = set.intersection(*aliases)
    (port,) = {service_config(s).listen.rpartition(":")[2] for s in replicas}
    return f"dns:///{alias}:{port}"


def test_gateways_reach_both_replicas_minio_and_each_other(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    services = compose["services"]
    minio = services["minio"]["environment"]
    replica_token = service_config(next(iter(by_command(compose, "serve").values()))).api_token
    gateways = by_command(compose, "gateway")
    configs = [gateway_config(service, tmp_path) for service in gateways.values()]
    assert len(configs) == 2
    for config in configs:
        assert config.jobstate_target == replica_target(compose) == "dns:///jobstate:50051"
        assert (config.host, config.port) == ("0.0.0.0", 8787)
        assert config.api_token == replica_token
        assert config.runpod_endpoint_url == ""  # the built-in simulated worker
        assert config.storage_configured
        assert config.r2_endpoint_url == "http://minio:9000"
        assert (config.r2_access_key_id, config.r2_secret_access_key) == (
            minio["MINIO_ROOT_USER"],
            minio["MINIO_ROOT_PASSWORD"],
        )
        assert config.r2_bucket in services["minio-init"]["entrypoint"][-1]
        assert config.output_prefix == "exports/"
        # Callbacks go through the proxy, so they may land on either gateway.
        public = urlsplit(config.public_url)
        assert (public.hostname, public.port) == ("proxy", 8080)
        assert services["proxy"]["ports"] == ["127.0.0.1:8080:8080"]
        assert "http://localhost:8080" in config.allowed_origins
    # Any gateway must accept the other's user and callback tokens.
    assert len({(c.jwt_secret, c.callback_secret) for c in configs}) == 1


def test_the_proxy_fronts_both_gateways(compose: dict[str, Any]) -> None:
    conf = (REPO / "deploy" / "nginx.conf").read_text()
    volumes = compose["services"]["proxy"]["volumes"]
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in volumes
    upstreams = re.findall(r"^\s*server\s+([\w.-]+:\d+)", conf, re.MULTILINE)
    gateways = by_command(compose, "gateway")
    expected = [f"{name}:{s['command'][-1].rpartition(':')[2]}" for name, s in gateways.items()]
    assert sorted(upstreams) == sorted(expected)
    assert re.search(r"^\s*listen\s+8080;", conf, re.MULTILINE)
    assert "proxy_set_header Upgrade $http_upgrade;" in conf  # WebSockets pass through
    assert "$request_uri" not in conf and "$request " not in conf  # no tokens in the log


def test_the_reconciler_uses_both_replicas(compose: dict[str, Any]) -> None:
    (service,) = by_command(compose, "reconcile").values()
    config = ReconcileConfig.from_env(environment(service))
    assert config.jobstate_target == replica_target(compose)
    assert config.api_token
    assert (config.stale_after, config.interval) == (600.0, 30.0)
    assert config.runpod_endpoint_url == ""


def test_the_image_is_python_311_slim_with_the_package_installed(compose: dict[str, Any]) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert re.search(r"^RUN pip install \.", dockerfile, re.MULTILINE)
    for service in jobstate_services(compose).values():
        assert service["build"] == "."


def test_the_image_copies_every_package_it_installs() -> None:
    """`pip install .` in the image installs what was copied: a package the build includes
    but the Dockerfile leaves out would make every `jobstate` command fail at import."""
    dockerfile = (REPO / "Dockerfile").read_text()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert re.search(rf"^COPY {package} \./{package}$", dockerfile, re.MULTILINE), package


def test_minio_init_creates_the_bucket_after_minio_is_healthy(compose: dict[str, Any]) -> None:
    init = compose["services"]["minio-init"]
    assert init["image"].startswith("minio/mc")
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    for gateway in by_command(compose, "gateway").values():
        # The simulated worker uploads at the end of every job: the bucket must exist first.
        assert gateway["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    script = init["entrypoint"][-1]
    assert "mc alias set local http://minio:9000" in script
    assert "mc mb --ignore-existing local/reel-ballers-users" in script


# --- a production topology -------------------------------------------------------------------


def strings(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """(path, text) of every string in the raw file (anchors already merged by the loader)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings(item, f"{where}[{index}]")
    elif isinstance(value, str):
        yield where, value


def test_every_process_runs_in_production(compose: dict[str, Any], tmp_path: Path) -> None:
    for service in by_command(compose, "serve").values():
        assert service_config(service).environment == "production"
    for service in by_command(compose, "gateway").values():
        config = gateway_config(service, tmp_path)
        assert (config.environment, config.development) == ("production", False)
    (reconcile,) = by_command(compose, "reconcile").values()
    assert ReconcileConfig.from_env(environment(reconcile)).environment == "production"
    assert not list(tmp_path.iterdir())  # production generates no secrets


def test_every_secret_is_required_and_has_no_default() -> None:
    used: dict[str, set[tuple[str, str, bool]]] = {}
    for where, text in strings(raw_compose()):
        for name, colon, kind, argument in _INTERPOLATION.findall(text):
            used.setdefault(name, set()).add((colon, kind, argument != ""))
            if _CREDENTIAL.search(name):
                assert kind in ("?", "") or not argument, f"{where}: {name} has a default"
        key = where.rpartition(".")[2]
        if _CREDENTIAL.search(key) and text:
            assert "${" in text, f"{where} is a literal credential"
    for name in REQUIRED:
        assert used[name] == {(":", "?", True)}, f"{name} must be ${{{name}:?...}} everywhere"
    for name in REQUIRED:
        with pytest.raises(Refused, match=name):
            interpolate(raw_compose(), {**operator_env(), name: ""})


def test_only_the_proxy_and_minios_api_are_published_on_loopback() -> None:
    published = {
        name: service["ports"]
        for name, service in interpolate(raw_compose(), operator_env())["services"].items()
        if service.get("ports")
    }
    assert published == {"proxy": ["127.0.0.1:8080:8080"], "minio": ["127.0.0.1:9000:9000"]}
    everywhere = interpolate(raw_compose(), operator_env(BIND="0.0.0.0"))["services"]
    assert everywhere["proxy"]["ports"] == ["0.0.0.0:8080:8080"]
    # MinIO's console (its own login page) stays inside the compose network.
    assert ":9001" not in " ".join(text for _, text in strings(raw_compose()["services"]["minio"]))


def test_env_example_names_every_variable_the_file_reads_and_holds_no_secret() -> None:
    read = {name for _, text in strings(raw_compose()) for name, *_ in _INTERPOLATION.findall(text)}
    example = env_example()
    assert set(example) == read
    assert {name: example[name] for name in REQUIRED} == dict.fromkeys(REQUIRED, "")
    ignored = (REPO / ".gitignore").read_text().split() + (
        REPO / ".dockerignore"
    ).read_text().split()
    assert ".env" in ignored  # the filled-in copy is never committed or baked into the image


def test_without_a_worker_choice_the_gateways_refuse_to_start(tmp_path: Path) -> None:
    env = {**operator_env(), "GATEWAY_SIMULATED_WORKER": ""}
    gateways = by_command(interpolate(raw_compose(), env), "gateway").values()
    for service in gateways:
        with pytest.raises(ValueError, match="GATEWAY_SIMULATED_WORKER=1"):
            gateway_config(service, tmp_path)
    runpod = operator_env(
        GATEWAY_SIMULATED_WORKER="",
        RUNPOD_ENDPOINT_URL="https://api.runpod.ai/v2/abc",
        RUNPOD_API_KEY="rp-key",
        GATEWAY_PUBLIC_URL="https://jobs.example",
    )
    services = interpolate(raw_compose(), runpod)
    for service in by_command(services, "gateway").values():
        config = gateway_config(service, tmp_path)
        assert (config.runpod_endpoint_url, config.public_url) == (
            "https://api.runpod.ai/v2/abc",
            "https://jobs.example",
        )
    (reconcile,) = by_command(services, "reconcile").values()
    assert ReconcileConfig.from_env(environment(reconcile)).runpod_api_key == "rp-key"
