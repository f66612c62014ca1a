"""`jobstate gateway`: configuration from the environment and flags, then serve until signalled.

Bad configuration exits 2 with one line naming the variable. SIGTERM/SIGINT stop accepting,
close every WebSocket with 1001 and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Mapping

from gateway.config import ConfigError, GatewayConfig
from gateway.server import Gateway
from jobstate import logs
from jobstate.loop import loop_factory, run

log = logging.getLogger(__name__)


def load_config(args: argparse.Namespace, environ: Mapping[str, str]) -> GatewayConfig:
    return GatewayConfig.from_env(
        environ,
        listen=getattr(args, "listen", None),
        jobstate_target=getattr(args, "jobstate_target", None),
    )


async def serve(config: GatewayConfig, stop: asyncio.Event | None = None) -> None:
    """Run the gateway until SIGTERM/SIGINT (or `stop` is set)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gateway = Gateway(config)
    try:
        await gateway.start()
        print(f"jobstate gateway on {gateway.url}", flush=True)
        await stop.wait()
        log.info("shutting down: closing sockets with 1001")
    finally:
        await gateway.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        config = load_config(args, environ)
        logs.setup(environ.get("JOBSTATE_LOG_LEVEL"))
        factory = loop_factory(environ)
    except ConfigError as exc:
        print(f"jobstate gateway: {exc}", file=sys.stderr)
        return 2
    try:
        run(serve(config), factory)
    except OSError as exc:  # e.g. the port is taken
        print(
            f"jobstate gateway: cannot listen on {config.host}:{config.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    return 0
