"""Prometheus metrics of one gateway, in a registry of its own (several gateways per test)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class _PlainCounter(Collector):
    """A counter whose value is a plain int kept elsewhere, read at scrape time."""

    def __init__(self, name: str, documentation: str, value: Callable[[], int]) -> None:
        self._name = name
        self._documentation = documentation
        self._value = value

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(self._name, self._documentation, value=self._value())


class Metrics:
    """The gateway's instruments; `render()` is the `/metrics` body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.sockets_open = Gauge(
            "gateway_websockets_open", "WebSockets currently open", registry=self.registry
        )
        self.watch_streams = Gauge(
            "gateway_watch_streams_open",
            "Shared WatchJob streams currently open (one per watched job)",
            registry=self.registry,
        )
        # NOTE: a plain int counted on the hot path and read at scrape time (see `queued`).
        self.sent = 0
        self.registry.register(
            _PlainCounter("gateway_ws_messages_sent", "WebSocket messages sent", lambda: self.sent)
        )
        self.messages_dropped = Counter(
            "gateway_ws_messages_dropped",
            "Intermediate progress messages dropped for sockets too slow to read",
            registry=self.registry,
        )
        self.messages_received = Counter(
            "gateway_ws_messages_received",
            "WebSocket messages received from clients (pings and ignored frames alike)",
            registry=self.registry,
        )
        # NOTE: a plain int the outboxes count, read at scrape time: a Gauge takes a lock per
        # change, ~1 µs per message per socket here (timeit), on the fan-out's hot path.
        self.queued = 0
        self.messages_queued = Gauge(
            "gateway_ws_messages_queued",
            "WebSocket messages waiting in sockets' outboxes, not yet handed to the socket",
            registry=self.registry,
        )
        self.messages_queued.set_function(lambda: self.queued)
        self.overflow_closes = Counter(
            "gateway_ws_overflow_closes",
            "WebSockets closed with 1008 because too much was left undelivered",
            registry=self.registry,
        )
        self.watch_replays = Gauge(
            "gateway_watch_replays_open",
            "Private WatchJob streams replaying history to one socket until it reaches the "
            "job's shared stream",
            registry=self.registry,
        )
        self.callbacks = Counter(
            "gateway_callbacks",
            "Worker callbacks by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.grpc_latency = Histogram(
            "gateway_grpc_call_seconds",
            "Latency of unary gRPC calls to jobstate",
            ["method", "code"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.runpod_requests = Counter(
            "gateway_runpod_requests",
            "Requests to RunPod by operation and outcome",
            ["operation", "outcome"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
