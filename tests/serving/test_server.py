"""The server process in-process: hot reloads (on request and by watching the artifact), health,
reflection and shutdown, a frozen startup heap, and a Redis outage that never fails it.

The outage tests run their own throwaway Redis on a free port (never the machine's shared one),
stop it mid-test and start it again on the same port.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from recsys.export import load_artifact
from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.server import FEATURE_STORE_HEALTH, SERVICE_NAME
from serving.store.embedded_redis import EmbeddedRedis, free_port
from tests.servers import health_status, health_stub, record, wait_for

if TYPE_CHECKING:
    from tests.servers import Artifacts, ServerHandle, StartServer

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_model_swap_invalidates_the_cache_and_a_bad_artifact_is_refused(
    server: ServerHandle, artifacts: Artifacts, tmp_path: Path
) -> None:
    record(server, "erin", ["sku-1", "sku-2", "sku-3"])
    request = pb.RecommendRequest(user_id="erin", k=5)
    server.stub.Recommend(request, timeout=5)
    assert server.stub.Recommend(request, timeout=5).source == pb.SOURCE_CACHE

    assert server.call(server.app.reload(artifacts.second)) is True
    second_version = load_artifact(artifacts.second).model_version
    swapped = server.stub.Recommend(request, timeout=5)
    assert swapped.source == pb.SOURCE_MODEL
    assert swapped.model_version == second_version
    assert server.stub.GetModelInfo(pb.GetModelInfoRequest()).model_version == second_version

    broken = tmp_path / "broken"
    shutil.copytree(artifacts.first, broken)
    with (broken / "model.ts").open("r+b") as handle:
        handle.seek(100)
        handle.write(b"garbage")
    assert server.call(server.app.reload(broken)) is False
    still = server.stub.Recommend(request, timeout=5)
    assert still.model_version == second_version
    assert still.source == pb.SOURCE_CACHE


@pytest.mark.parametrize("name", ["", SERVICE_NAME, FEATURE_STORE_HEALTH])
def test_health_says_serving(shared_server: ServerHandle, name: str) -> None:
    assert health_status(shared_server, name) == SERVING, name


def test_reflection_lists_the_services(shared_server: ServerHandle) -> None:
    # Typed loosely: the reflection stubs declare the method without a signature.
    reflection: Any = reflection_pb2_grpc.ServerReflectionStub(shared_server.channel)
    answers = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {
        service.name for answer in answers for service in answer.list_services_response.service
    }
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


def test_shutdown_tells_health_watchers_not_serving(server: ServerHandle) -> None:
    health = health_stub(server.channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10)
    assert next(watch).status == SERVING
    stopping = asyncio.run_coroutine_threadsafe(server.app.stop(2.0), server.loop)
    assert next(watch).status == NOT_SERVING
    watch.cancel()  # the only call left in flight: the drain ends with it
    stopping.result(10)


def test_watch_reloads_a_replaced_artifact(
    start_server: StartServer, artifacts: Artifacts, tmp_path: Path
) -> None:
    served = tmp_path / "artifact"
    shutil.copytree(artifacts.first, served)
    server = start_server(artifact=served, watch=True, watch_interval_s=0.1)
    staging = tmp_path / "staging"
    shutil.copytree(artifacts.second, staging)
    shutil.rmtree(served)
    staging.rename(served)
    second = load_artifact(artifacts.second).model_version
    deadline = time.monotonic() + 20
    while server.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5).model_version != second:
        assert time.monotonic() < deadline, "the watcher did not reload the new artifact"
        time.sleep(0.1)


def test_requests_during_a_swap_are_all_answered(
    start_server: StartServer, artifacts: Artifacts
) -> None:
    server = start_server(cache_ttl_s=0)
    request = pb.RecommendRequest(history=["sku-1", "sku-2"], k=3)

    def ask(_: int) -> str:
        return server.stub.Recommend(request, timeout=10).model_version

    with ThreadPoolExecutor(max_workers=4) as pool:
        before = pool.map(ask, range(40))
        swapped = server.call(server.app.reload(artifacts.second))
        after = list(pool.map(ask, range(40)))
        versions = [*before, *after]
    assert swapped
    second = load_artifact(artifacts.second).model_version
    assert len(versions) == 80, "every request was answered"
    assert after[-1] == second
    assert set(versions) <= {load_artifact(artifacts.first).model_version, second}


def test_the_startup_heap_is_frozen_out_of_garbage_collection(start_server: StartServer) -> None:
    """Full collections walked the ~10^6 objects of the imports and the model on every run
    (100-250 ms pauses under load); a started server has frozen them."""
    gc.unfreeze()  # earlier servers in this process froze theirs
    assert gc.get_freeze_count() == 0
    server = start_server()
    frozen = gc.get_freeze_count()
    assert frozen > 100_000, frozen  # torch alone brings several hundred thousand
    response = server.stub.Recommend(pb.RecommendRequest(user_id="gc-user", k=3), timeout=5)
    assert len(response.items) == 3


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    redis_server = EmbeddedRedis(port=free_port()).start()
    yield redis_server
    redis_server.close()


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
    assert health_status(server, FEATURE_STORE_HEALTH) == NOT_SERVING
    assert health_status(server, SERVICE_NAME) == SERVING

    own_redis.start()  # empty: the throwaway Redis keeps nothing
    wait_for(
        lambda: health_status(server, FEATURE_STORE_HEALTH) == SERVING,
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
    assert health_status(server, FEATURE_STORE_HEALTH) == NOT_SERVING
    answer = server.stub.Recommend(pb.RecommendRequest(user_id="u", history=["sku-1"], k=2))
    assert (answer.source, answer.degraded) == (pb.SOURCE_MODEL, True)

    late = EmbeddedRedis(port=port).start()
    try:
        wait_for(
            lambda: health_status(server, FEATURE_STORE_HEALTH) == SERVING,
            "Redis to be found",
        )
        fresh = server.stub.Recommend(pb.RecommendRequest(user_id="u", history=["sku-1"], k=2))
        assert not fresh.degraded
    finally:
        late.close()
