"""Running the gateway: bind, learn the port, serve, shut down gracefully.

`Gateway(config)` is used by `gateway.main`, `jobstate dev` and the tests alike:
`await gateway.start()` binds (port 0 picks a free one; `gateway.port`/`gateway.url` tell which),
`await gateway.stop()` stops accepting, closes sockets with 1001 and releases everything.

A connection that has not completed a request's headers `keepalive_timeout` seconds after it
opened or after its last response (idle, half-sent, trickling: slowloris) is closed.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from gateway.app import build_app, make_services
from gateway.config import GatewayConfig
from gateway.context import Services
from jobstate.loop import loop_name

log = logging.getLogger(__name__)


class RedactedAccessLogger(AbstractAccessLogger):
    """The access log without query strings: `?token=` must never reach a log.

    NOTE: answered worker callbacks (2xx) are left out: at hundreds a second they would be
    most of the log and a tenth of the gateway's CPU (py-spy under the fan-out bench); they
    are counted in `gateway_callbacks`, and refused ones are still logged here."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if response.status < 300 and request.method == "POST" and request.path.endswith("/do"):
            return
        self.logger.info(
            '%s "%s %s" %s %.1fms',
            request.remote,
            request.method,
            request.path,
            response.status,
            time * 1000,
        )


# aiohttp's `run_app` default; `AppRunner` alone would keep idle connections for 3,630 s.
KEEPALIVE_TIMEOUT = 75.0


class Gateway:
    def __init__(
        self, config: GatewayConfig, *, keepalive_timeout: float = KEEPALIVE_TIMEOUT
    ) -> None:
        self.config = config
        self.keepalive_timeout = keepalive_timeout
        self.services: Services | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        assert self.services is not None, "start() first"
        return self.services.public_url

    async def start(self) -> None:
        if len(self.config.jwt_secret.encode()) < 32:  # development only: production refuses
            log.warning("JOBSTATE_JWT_SECRET is shorter than 32 bytes; HS256 wants at least 32")
        self.services = make_services(self.config)
        app = build_app(self.services)
        # NOTE: aiohttp (>= 3.14.5) arms the keep-alive timer when a connection opens and
        # re-arms it after each response, closing the connection if a request's headers are
        # still incomplete when it fires: it bounds header reads too. WebSockets are not
        # affected (their heartbeat watches them).
        self._runner = web.AppRunner(
            app,
            access_log_class=RedactedAccessLogger,
            handle_signals=False,
            shutdown_timeout=5,
            keepalive_timeout=self.keepalive_timeout,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the bound port (port 0 picks one)
        self.services.public_url = self.config.resolved_public_url(self.port)
        self.services.origins = self.config.resolved_origins(self.services.public_url)
        log.info("jobstate gateway runs on the %s event loop", loop_name())
        log.info("gateway listening on %s:%d", self.config.host, self.port)
        if not self.config.runpod_endpoint_url and not self.config.development:
            log.warning(
                "RUNPOD_ENDPOINT_URL is empty and GATEWAY_SIMULATED_WORKER=1: the simulated "
                "worker completes every job"
            )

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
