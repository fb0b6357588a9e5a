"""A Redis outage never fails the server: answers degrade, writes are refused, and it recovers.

Each test runs its own throwaway Redis on a free port (never the machine's shared one), stops it
mid-test and starts it again on the same port.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.server import FEATURE_STORE_HEALTH, SERVICE_NAME
from serving.store.embedded_redis import EmbeddedRedis, free_port

if TYPE_CHECKING:
    from tests.serving.conftest import ServerHandle, StartServer


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    redis_server = EmbeddedRedis(port=free_port()).start()
    yield redis_server
    redis_server.close()


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _health(server: ServerHandle, name: str) -> int:
    stub = health_pb2_grpc.HealthStub(server.channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status


def test_redis_stopped_and_restarted_mid_test(
    start_server: StartServer, own_redis: EmbeddedRedis
) -> None:
    server = start_server(redis_url=own_redis.url, namespace="outage")
    stub = server.stub
    stub.RecordInteractions(
        pb.RecordInteractionsRequest(user_id="u1", item_ids=["sku-1", "sku-2"]), timeout=5
    )
    healthy = stub.Recommend(pb.RecommendRequest(user_id="u1", k=3), timeout=5)
    assert (healthy.source, healthy.degraded) == (pb.SOURCE_MODEL, False)

    own_redis.stop()
    with_history = stub.Recommend(
        pb.RecommendRequest(user_id="u1", history=["sku-3"], k=3), timeout=5
    )
    assert with_history.source == pb.SOURCE_MODEL
    assert with_history.degraded
    assert with_history.history_length == 1, "only the request's history could be read"
    without = stub.Recommend(pb.RecommendRequest(user_id="u1", k=3), timeout=5)
    assert without.source == pb.SOURCE_FALLBACK
    assert without.fallback_reason == pb.FALLBACK_REASON_FEATURE_STORE_UNAVAILABLE
    assert without.degraded
    assert len(without.items) == 3
    with pytest.raises(grpc.RpcError) as caught:
        stub.RecordInteractions(
            pb.RecordInteractionsRequest(user_id="u1", item_ids=["sku-4"]), timeout=5
        )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetUserHistory(pb.GetUserHistoryRequest(user_id="u1"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert _health(server, FEATURE_STORE_HEALTH) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert _health(server, SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING

    own_redis.start()  # empty: the throwaway Redis keeps nothing
    _wait_for(
        lambda: _health(server, FEATURE_STORE_HEALTH) == health_pb2.HealthCheckResponse.SERVING,
        "the feature store to be seen again",
    )
    recorded = stub.RecordInteractions(
        pb.RecordInteractionsRequest(user_id="u1", item_ids=["sku-4", "sku-5"]), timeout=5
    )
    assert recorded.history_length == 2
    back = stub.Recommend(pb.RecommendRequest(user_id="u1", k=3), timeout=5)
    assert (back.source, back.degraded, back.history_length) == (pb.SOURCE_MODEL, False, 2)


def test_a_redis_that_is_down_at_start_only_degrades(start_server: StartServer) -> None:
    port = free_port()
    server = start_server(redis_url=f"redis://127.0.0.1:{port}/0", namespace="down")
    assert _health(server, FEATURE_STORE_HEALTH) == health_pb2.HealthCheckResponse.NOT_SERVING
    answer = server.stub.Recommend(pb.RecommendRequest(user_id="u", history=["sku-1"], k=2))
    assert (answer.source, answer.degraded) == (pb.SOURCE_MODEL, True)

    late = EmbeddedRedis(port=port).start()
    try:
        _wait_for(
            lambda: _health(server, FEATURE_STORE_HEALTH) == health_pb2.HealthCheckResponse.SERVING,
            "Redis to be found",
        )
        fresh = server.stub.Recommend(pb.RecommendRequest(user_id="u", history=["sku-1"], k=2))
        assert not fresh.degraded
    finally:
        late.close()
