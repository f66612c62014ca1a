"""`jobstate serve`: the grpc.aio server with health, reflection, auth and graceful shutdown."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from jobstate import logs
from jobstate.auth import TokenAuthInterceptor
from jobstate.config import ConfigError, ServiceConfig, parse_listen
from jobstate.errors import Unavailable
from jobstate.hub import Hub
from jobstate.loop import loop_factory, loop_name, run
from jobstate.migrate import SchemaNotCurrent
from jobstate.relay import EventRelay, asyncpg_dsn
from jobstate.service import JobService, utcnow
from jobstate.servicer import JobStateServicer
from jobstate.store import Store
from jobstate.supervisor import Supervisor
from jobstate.v1 import jobstate_pb2, jobstate_pb2_grpc

log = logging.getLogger(__name__)
SERVICE_NAME = jobstate_pb2.DESCRIPTOR.services_by_name["JobStateService"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# Keepalive so idle WatchJob streams survive proxies; clients may ping every 10 s.
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    # A second server on a taken port must fail, not silently share it.
    ("grpc.so_reuseport", 0),
]


@dataclass
class RunningServer:
    """A started server; `port` is the bound port (useful with port 0)."""

    config: ServiceConfig
    server: grpc.aio.Server
    port: int
    store: Store
    hub: Hub
    service: JobService
    servicer: JobStateServicer
    health: health.aio.HealthServicer
    supervisor: Supervisor

    async def stop(self, grace: float = 10.0) -> None:
        """Drain: refuse new calls, end watch streams cleanly (OK), finish in-flight RPCs."""
        await self.health.enter_graceful_shutdown()
        self.hub.close()
        await self.server.stop(grace)
        await self.supervisor.close()
        await self.store.close()


async def _retention_loop(store: Store, config: ServiceConfig) -> None:
    while True:
        await asyncio.sleep(config.retention_interval)
        now = utcnow()
        try:
            removed = await store.compact(
                now - timedelta(seconds=config.history_retention), config.max_progress_events
            )
            if config.job_retention:
                removed += await store.purge_jobs(now - timedelta(seconds=config.job_retention))
            if removed:
                log.info("retention removed %d rows", removed)
        except Unavailable as exc:
            log.warning("retention skipped: store unavailable: %s", exc.cause)


async def start_server(config: ServiceConfig) -> RunningServer:
    """Open the store, bind, and start serving. Raises Unavailable, ConfigError, or
    SchemaNotCurrent (the database needs `jobstate migrate`, see `Store.open`).

    Background loops (group commit, retention, the relay) run supervised: health is
    NOT_SERVING from a loop's failure until its restart.
    """
    health_servicer = health.aio.HealthServicer()

    async def report(healthy: bool) -> None:
        status = SERVING if healthy else NOT_SERVING
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, status)

    supervisor = Supervisor(report)
    # Before the store: an address this host cannot bind must not create or upgrade a database.
    _check_bindable(config.listen)
    hub = Hub()
    store = await Store.open(
        config.database_url,
        migrate=config.migrate,
        sqlite_synchronous=config.sqlite_synchronous,
        supervisor=supervisor,
        on_commit=hub.publish,
    )
    service = JobService(store, hub)
    servicer = JobStateServicer(service, config.max_watch_streams)
    interceptors = [TokenAuthInterceptor(config.api_token)] if config.api_token else []
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors)
    jobstate_pb2_grpc.add_JobStateServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        port = _bind(server, config)
    except Exception:
        await store.close()
        raise
    await server.start()
    await report(supervisor.healthy)
    supervisor.spawn("retention", functools.partial(_retention_loop, store, config))
    if store.db.dialect == "postgresql":
        relay = EventRelay(asyncpg_dsn(config.database_url), store, hub)
        supervisor.spawn("event-relay", relay.run)
    return RunningServer(
        config, server, port, store, hub, service, servicer, health_servicer, supervisor
    )


def _check_bindable(listen: str) -> None:
    """Bind once ourselves: grpc core reports a failed bind on stderr in its own format."""
    host, port = parse_listen(listen, "JOBSTATE_LISTEN")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {listen}: {exc.strerror or exc}") from None


def _bind(server: grpc.aio.Server, config: ServiceConfig) -> int:
    try:
        if config.tls_cert:
            credentials = grpc.ssl_server_credentials(
                [(Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes())]
            )
            port = server.add_secure_port(config.listen, credentials)
        else:
            port = server.add_insecure_port(config.listen)
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {config.listen}: {exc}") from None
    if port == 0:
        raise ConfigError(f"cannot listen on {config.listen}")
    return port


async def _serve(config: ServiceConfig) -> int:
    try:
        running = await start_server(config)
    except (ConfigError, Unavailable, SchemaNotCurrent) as exc:
        print(f"jobstate serve: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    host = config.listen.rpartition(":")[0]
    log.info("jobstate serve runs on the %s event loop", loop_name())
    log.info("jobstate serve listening on %s:%d", host, running.port)
    await stop.wait()
    log.info("shutting down: draining RPCs and ending watch streams")
    with contextlib.suppress(asyncio.CancelledError):
        await running.stop()
    return 0


def main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        logs.setup(environ.get("JOBSTATE_LOG_LEVEL"))
        config = ServiceConfig.from_env(
            environ,
            listen=args.listen,
            database_url=args.database_url,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            migrate=args.migrate or None,
        )
        factory = loop_factory(environ)
    except ConfigError as exc:
        print(f"jobstate serve: {exc}", file=sys.stderr)
        return 2
    return run(_serve(config), factory)
