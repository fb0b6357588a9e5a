"""The Prometheus endpoint of a real server, scraped over HTTP on loopback: every metric there,
and each one moving with the traffic that should move it."""

from __future__ import annotations

import urllib.request
from typing import TYPE_CHECKING

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.config import ServeConfig
from serving.proto.recsys.v1 import recommender_pb2 as pb
from tests.servers import on_cluster, record

if TYPE_CHECKING:
    from tests.servers import Artifacts, ServerHandle, StartServer

EXPECTED = {
    "recsys_requests",
    "recsys_request_seconds",
    "recsys_answers",
    "recsys_degraded_answers",
    "recsys_forward_batch_size",
    "recsys_forward_seconds",
    "recsys_redis_up",
    "recsys_redis_outages",
    "recsys_model_reloads",
    "recsys_model",
    "recsys_model_load_seconds",
    "recsys_queue_depth",
    "recsys_in_flight",
    "recsys_near_cache_hits",
    "recsys_near_cache_invalidations",
    "recsys_near_cache_bytes",
    "recsys_abandoned_requests",
}


def scrape(server: ServerHandle) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = f"http://127.0.0.1:{server.app.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback
        text = answer.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def families(values: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> set[str]:
    names = set()
    for name, _ in values:
        for suffix in ("_total", "_bucket", "_count", "_sum", "_created", "_info"):
            name = name.removesuffix(suffix)
        names.add(name)
    return names


def test_every_metric_is_served_and_moves_with_the_traffic(
    start_server: StartServer, artifacts: Artifacts, redis_url: str
) -> None:
    server = start_server(metrics_port=0, cache_ttl_s=30)
    before = scrape(server)  # labelled series appear with their first sample
    models = [labels for name, labels in before if name == "recsys_model_info"]
    assert any(("artifact", str(artifacts.first)) in labels for labels in models)
    record(server, "metrics-user", ["sku-1", "sku-2"])
    request = pb.RecommendRequest(user_id="metrics-user", k=3)
    server.stub.Recommend(request, timeout=5)  # the model
    server.stub.Recommend(request, timeout=5)  # the cache
    server.stub.Recommend(pb.RecommendRequest(user_id="nobody", k=3), timeout=5)  # fallback
    with pytest.raises(grpc.RpcError):
        server.stub.Recommend(pb.RecommendRequest(k=0), timeout=5)
    assert server.call(server.app.reload(artifacts.second)) is True
    after = scrape(server)
    near_cache = {name for name in EXPECTED if name.startswith("recsys_near_cache_")}
    assert EXPECTED - (near_cache if on_cluster(redis_url) else set()) <= families(after)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("recsys_requests_total", method="Recommend", code="OK") == 3
    assert grew("recsys_requests_total", method="Recommend", code="INVALID_ARGUMENT") == 1
    assert grew("recsys_requests_total", method="RecordInteractions", code="OK") == 1
    assert grew("recsys_request_seconds_count", method="Recommend") == 4
    assert grew("recsys_answers_total", source="SOURCE_MODEL", fallback_reason="") == 1
    assert grew("recsys_answers_total", source="SOURCE_CACHE", fallback_reason="") == 1
    cold = {"source": "SOURCE_FALLBACK", "fallback_reason": "FALLBACK_REASON_COLD_START"}
    assert grew("recsys_answers_total", **cold) == 1
    assert grew("recsys_forward_batch_size_count") >= 1
    assert grew("recsys_forward_seconds_sum") > 0
    assert grew("recsys_model_reloads_total", outcome="ok") == 1
    assert after[("recsys_redis_up", ())] == 1.0
    assert after[("recsys_model_load_seconds", ())] > 0
    models = [labels for name, labels in after if name == "recsys_model_info"]
    assert any(("artifact", str(artifacts.second)) in labels for labels in models)


def test_no_metrics_port_means_no_endpoint(server: ServerHandle) -> None:
    assert server.app.metrics is None and server.app.metrics_port == 0


def test_a_bad_metrics_port_names_the_flag() -> None:
    from recsys.errors import ConfigError

    with pytest.raises(ConfigError, match="--metrics-port must be in 0..65535"):
        ServeConfig(metrics_port=70000)


def test_the_lean_latency_histogram_counts_as_prometheus_clients_own() -> None:
    # The request histogram is counted without prometheus-client's Histogram (see
    # serving.metrics); its exposition must be the same, bucket edges included (le is <=).
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from serving.metrics import LATENCY_BUCKETS, _LatencyHistogram

    values = [0.0, 0.0004, 0.0005, 0.0007, 0.002, 0.0099, 0.01, 1.0, 2.5, 3.0, 40.0]
    reference_registry, lean_registry = CollectorRegistry(), CollectorRegistry()
    reference = Histogram(
        "t", "t", ["method"], buckets=LATENCY_BUCKETS, registry=reference_registry
    )
    lean = _LatencyHistogram("t", "t", LATENCY_BUCKETS)
    lean_registry.register(lean)
    for method in ("Recommend", "GetUserHistory"):
        for value in values if method == "Recommend" else values[:3]:
            reference.labels(method).observe(value)
            lean.counts_of(method).add(value)

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str, str], float]:
        text = generate_latest(registry).decode()
        return {
            (s.name, s.labels["method"], s.labels.get("le", "")): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if not s.name.endswith("_created")
        }

    assert samples(lean_registry) == samples(reference_registry)
