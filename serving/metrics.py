"""Prometheus metrics of one server process (``recsys serve --metrics-port N``).

Served in the Prometheus text format by ``prometheus-client``'s own HTTP server on a thread of
its own, from a registry per server (not the library's global one, so that several servers in
one process, as in the tests, keep apart). What the request path pays is kept to about a
microsecond a call, which is ~1% of a near-cache hit: counters are children looked up once per
label set and kept (prometheus-client's ``labels()`` costs three times an increment), and the
per-request latency histogram is ``_LatencyHistogram``, a list of bucket counts the event loop
bumps and prometheus-client exposes at scrape time (its own ``Histogram.observe`` took 1.35 us, a
lock and a Python loop over the buckets; metrics on cost 3.9% of a cache hit's server CPU with it,
``bench/results/metrics_overhead.md``). Everything that already has a counter elsewhere (the
near cache, the runtime's forwards) is read when Prometheus scrapes, not on the hot path. Names
and meanings are listed in the README (Metrics).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator
from itertools import accumulate
from typing import Any, Final

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from recsys.errors import ConfigError
from serving.proto.recsys.v1.recommender_pb2 import SOURCE_FALLBACK, FallbackReason, Source

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
        self.latency = _LatencyHistogram(
            f"{PREFIX}_request_seconds", "Time from a request's arrival to its answer.",
            LATENCY_BUCKETS,
        )  # fmt: skip
        r.register(self.latency)
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

        self._answers: dict[tuple[Source.ValueType, FallbackReason.ValueType], Any] = {}

    def observer(self, method: str) -> Callable[[grpc.StatusCode, float], None]:
        """What the error interceptor calls as each call of ``method`` ends: its status and
        seconds."""
        ok = self.requests.labels(method, grpc.StatusCode.OK.name)
        latency = self.latency.counts_of(method)

        def observe(code: grpc.StatusCode, seconds: float) -> None:
            if code is grpc.StatusCode.OK:
                ok.inc()
            else:
                self.requests.labels(method, code.name).inc()
            latency.add(seconds)

        return observe

    def count_answer(
        self, source: Source.ValueType, fallback_reason: FallbackReason.ValueType, degraded: bool
    ) -> None:
        """One Recommend answer by its source (a ``Source`` value) and, for a fallback, its
        reason (a ``FallbackReason`` value)."""
        child = self._answers.get((source, fallback_reason))
        if child is None:
            reason = FallbackReason.Name(fallback_reason) if source == SOURCE_FALLBACK else ""
            child = self._answers[(source, fallback_reason)] = self.answers.labels(
                Source.Name(source), reason
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


class _Counts:
    """One label set's bucket counts (the last one is +Inf) and sum."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)
        self.total = 0.0

    def add(self, value: float) -> None:
        # Only the event loop's thread adds; a scrape may read a count one behind, never a torn one.
        self.buckets[bisect_left(self.bounds, value)] += 1
        self.total += value


class _LatencyHistogram(Collector):
    """A histogram by ``method``, counted without locks on the event loop (see the module) and
    exposed through prometheus-client's ``HistogramMetricFamily``: the same series as its
    ``Histogram`` (``_bucket``, ``_count``, ``_sum``)."""

    def __init__(self, name: str, documentation: str, bounds: tuple[float, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = bounds
        self._by_method: dict[str, _Counts] = {}
        # The ``le`` labels as prometheus-client writes them (untyped in its package).
        self._edges: list[str] = [
            *(floatToGoString(bound) for bound in bounds),  # type: ignore[no-untyped-call]
            "+Inf",
        ]

    def counts_of(self, method: str) -> _Counts:
        counts = self._by_method.get(method)
        if counts is None:
            counts = self._by_method[method] = _Counts(self.bounds)
        return counts

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=["method"])
        for method, counts in list(self._by_method.items()):
            cumulative = list(accumulate(counts.buckets))
            family.add_metric(
                [method], list(zip(self._edges, cumulative, strict=True)), sum_value=counts.total
            )
        yield family


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
