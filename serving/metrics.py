"""Prometheus metrics of one server process (``recsys serve --metrics-port N``).

Served in the Prometheus text format by ``prometheus-client``'s own HTTP server on a thread of
its own, from a registry per server (not the library's global one, so that several servers in
one process, as in the tests, keep apart). Counters on the request path are plain increments
(about a microsecond) on labelled children looked up once per label set and kept: prometheus-
client's ``labels()`` costs three times the increment itself (``observe_call`` took 9 us a call
through it, 2.3 us with kept children). Everything that already has a counter elsewhere (the
near cache, the runtime's forwards) is read when Prometheus scrapes, not on the hot path. Names
and meanings are listed in the README (Metrics).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, Final

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from recsys.errors import ConfigError

PREFIX: Final = "recsys"
LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    """Every metric of one server, in a registry of its own."""

    def __init__(self) -> None:
        self._http: tuple[Any, threading.Thread] | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests", "RPCs answered, by method and status code.",
            ["method", "code"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            f"{PREFIX}_request_seconds", "Time from a request's arrival to its answer.",
            ["method"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.answers = Counter(
            f"{PREFIX}_answers", "Recommend answers by source (model, cache, fallback) and, for "
            "fallbacks, reason.", ["source", "fallback_reason"], registry=r,
        )  # fmt: skip
        self.degraded = Counter(
            f"{PREFIX}_degraded_answers",
            "Answers given without the user's stored history (feature store unavailable).",
            registry=r,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_forward_batch_size", "Requests per model forward.",
            buckets=BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.forward = Histogram(
            f"{PREFIX}_forward_seconds", "Time of one model forward, from launch to result.",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.redis_up = Gauge(
            f"{PREFIX}_redis_up", "1 while the feature store answers, 0 while it is down.",
            registry=r,
        )  # fmt: skip
        self.redis_up.set(1)
        self.redis_outages = Counter(
            f"{PREFIX}_redis_outages", "Times the feature store was declared down.", registry=r
        )
        self.reloads = Counter(
            f"{PREFIX}_model_reloads", "Hot reloads of the model, by outcome (ok, refused).",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.model = Info(
            f"{PREFIX}_model", "The model being served: version, artifact, load time.",
            registry=r,
        )  # fmt: skip
        self.model_load_seconds = Gauge(
            f"{PREFIX}_model_load_seconds", "Seconds the current model took to load and verify.",
            registry=r,
        )  # fmt: skip

        self._calls: dict[tuple[str, grpc.StatusCode], tuple[Any, Any]] = {}
        self._answers: dict[tuple[str, str], Any] = {}

    def observe_call(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        children = self._calls.get((method, code))
        if children is None:
            children = (self.requests.labels(method, code.name), self.latency.labels(method))
            self._calls[(method, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def count_answer(self, source: str, fallback_reason: str, degraded: bool) -> None:
        """One Recommend answer by its source (and a fallback's reason)."""
        child = self._answers.get((source, fallback_reason))
        if child is None:
            child = self._answers[(source, fallback_reason)] = self.answers.labels(
                source, fallback_reason
            )
        child.inc()
        if degraded:
            self.degraded.inc()

    def redis_changed(self, available: bool) -> None:
        self.redis_up.set(1 if available else 0)
        if not available:
            self.redis_outages.inc()

    def watch(self, read: Callable[[], dict[str, float]]) -> None:
        """Expose the counters ``read`` returns at scrape time (``recsys_<name>``): counts kept
        elsewhere (queue depth, cache hits), read only when Prometheus asks."""
        self.registry.register(_Snapshot(read))

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint (``/metrics``) on a thread; returns the bound port."""
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as err:
            raise ConfigError(f"--metrics-port {port}: cannot listen ({err.strerror})") from err
        self._http = (server, thread)
        return int(server.server_port)

    def close(self) -> None:
        """Stop the HTTP endpoint (its port is free again)."""
        http, self._http = self._http, None
        if http is not None:
            server, thread = http
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


class _Snapshot(Collector):
    """Values read from the server's own counters when scraped; ``_total`` names are counters,
    the rest gauges."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self.read = read

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        for name, (kind, help_text, value) in _described(self.read()).items():
            if kind == "counter":
                yield CounterMetricFamily(f"{PREFIX}_{name}", help_text, value=value)
            else:
                yield GaugeMetricFamily(f"{PREFIX}_{name}", help_text, value=value)


SNAPSHOT_METRICS: Final = {
    "queue_depth": ("gauge", "Requests waiting for the model."),
    "in_flight": ("gauge", "Recommend requests being answered."),
    "near_cache_hits": ("counter", "Answers served from the in-process cache."),
    "near_cache_invalidations": ("counter", "Keys Redis invalidated in the in-process cache."),
    "near_cache_bytes": ("gauge", "Bytes the in-process cache holds (as its budget counts)."),
    "abandoned_requests": ("counter", "Requests dropped before the model (deadline, caller gone)."),
}


def _described(values: dict[str, float]) -> dict[str, tuple[str, str, float]]:
    return {
        name: (*SNAPSHOT_METRICS[name], float(value))
        for name, value in values.items()
        if name in SNAPSHOT_METRICS
    }
