"""What every handler needs, gathered in one object stored on the aiohttp application."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from aiohttp import web

from gateway.auth import CallbackAuth, UserAuth
from gateway.config import GatewayConfig
from gateway.limits import SocketSlots, StartLimits
from gateway.metrics import Metrics
from gateway.owners import Owners
from gateway.storage import Storage
from gateway.submission import Submitter
from gateway.userfeed import UserFeeds
from gateway.watch import WatchHub
from gateway.worker import Worker
from jobstate.client import JobStateClient


@dataclass(eq=False)
class Services:
    config: GatewayConfig
    metrics: Metrics
    client: JobStateClient
    users: UserAuth
    callbacks: CallbackAuth
    hub: WatchHub
    feeds: UserFeeds
    storage: Storage
    worker: Worker
    starts: StartLimits
    submitter: Submitter
    slots: SocketSlots
    public_url: str = ""
    origins: frozenset[str] = frozenset()
    sockets: weakref.WeakSet[web.WebSocketResponse] = field(default_factory=weakref.WeakSet)
    owners: Owners = field(init=False)

    def __post_init__(self) -> None:
        self.owners = Owners(self.hub, self.config.rpc_timeout)

    def callback_url(self, job_id: str) -> str:
        return f"{self.public_url}/api/jobs/{job_id}/do?token={self.callbacks.token(job_id)}"


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]
