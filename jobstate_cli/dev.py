"""`jobstate dev`: the service, the gateway, the simulated worker and the reconciler in one
process.

SQLite under ./data by default, migrated to this release's schema (as `serve --migrate`);
ENVIRONMENT defaults to development here, so the gateway makes its secrets once under ./data
and serves `/api/dev/token`. Honours JOBSTATE_LISTEN,
GATEWAY_LISTEN and JOBSTATE_DATABASE_URL (and every other variable of both processes); the
gateway always talks to the service started here. SIGTERM/SIGINT stop the gateway first
(sockets get 1001), then the service.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Mapping
from dataclasses import replace

from gateway.config import GatewayConfig
from gateway.reconcile import ReconcileConfig
from gateway.reconcile import run_until as reconcile_until
from gateway.server import Gateway
from jobstate import logs
from jobstate.config import ConfigError, ServiceConfig
from jobstate.errors import Unavailable
from jobstate.loop import loop_factory
from jobstate.loop import run as run_loop
from jobstate.migrate import SchemaNotCurrent
from jobstate.server import start_server

log = logging.getLogger(__name__)


async def run(environ: Mapping[str, str], stop: asyncio.Event | None = None) -> int:
    """Run until signalled (or `stop` is set); returns the exit code."""
    stop = stop or asyncio.Event()
    env = {"ENVIRONMENT": "development", **environ}
    try:
        service_config = ServiceConfig.from_env(env, migrate=True)
        # The gateway's target is filled in once the service has bound its port.
        GatewayConfig.from_env(env)
        reconcile_config = ReconcileConfig.from_env(env)
    # The gateway's and the reconciler's configurations raise jobstate.config's ConfigError too.
    except ConfigError as exc:
        print(f"jobstate dev: {exc}", file=sys.stderr)
        return 2
    try:
        service = await start_server(service_config)
    except (ConfigError, Unavailable, SchemaNotCurrent) as exc:
        print(f"jobstate dev: {exc}", file=sys.stderr)
        return 1
    host = service_config.listen.rpartition(":")[0] or "127.0.0.1"
    target = f"{host}:{service.port}"
    gateway = Gateway(GatewayConfig.from_env(env, jobstate_target=target))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reconcile_stop = asyncio.Event()
    reconciler = asyncio.create_task(
        reconcile_until(replace(reconcile_config, jobstate_target=target), reconcile_stop)
    )
    try:
        try:
            await gateway.start()
        except OSError as exc:
            print(f"jobstate dev: cannot start the gateway: {exc}", file=sys.stderr)
            return 1
        print(f"jobstate service on {target} ({service_config.database_url})", flush=True)
        print(f"jobstate dev: open {gateway.url}/ for the demo", flush=True)
        await stop.wait()
        log.info("shutting down")
    finally:
        reconcile_stop.set()
        await reconciler
        await gateway.stop()
        await service.stop(grace=5)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0


def main(environ: Mapping[str, str]) -> int:
    try:
        logs.setup(environ.get("JOBSTATE_LOG_LEVEL"))
        factory = loop_factory(environ)
    except ConfigError as exc:
        print(f"jobstate dev: {exc}", file=sys.stderr)
        return 2
    return run_loop(run(environ), factory)
