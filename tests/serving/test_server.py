"""The Recommender service over a real gRPC channel, with a real Redis and real artifacts."""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from recsys.export import load_artifact
from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.server import FEATURE_STORE_HEALTH, SERVICE_NAME

if TYPE_CHECKING:
    from tests.serving.conftest import Artifacts, ServerHandle, StartServer


def _ids(response: pb.RecommendResponse) -> list[str]:
    return [item.item_id for item in response.items]


def _record(server: ServerHandle, user: str, items: list[str]) -> pb.RecordInteractionsResponse:
    return server.stub.RecordInteractions(
        pb.RecordInteractionsRequest(user_id=user, item_ids=items), timeout=5
    )


def test_model_info_is_the_artifact_manifest(server: ServerHandle, artifacts: Artifacts) -> None:
    info = server.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
    artifact = load_artifact(artifacts.first)
    assert info.model_version == artifact.model_version
    assert info.format_version == "recsys.artifact/v1"
    assert (info.max_len, info.num_items) == (artifact.max_len, artifact.num_items)
    assert json.loads(info.manifest_json)["model_version"] == artifact.model_version
    assert info.loaded_at


def test_unknown_user_gets_the_most_popular_items(
    server: ServerHandle, artifacts: Artifacts
) -> None:
    response = server.stub.Recommend(pb.RecommendRequest(user_id="nobody", k=5), timeout=5)
    artifact = load_artifact(artifacts.first)
    expected = [artifact.item_ids[index] for index, _ in artifact.popular(5)]
    assert response.source == pb.SOURCE_FALLBACK
    assert response.fallback_reason == pb.FALLBACK_REASON_COLD_START
    assert _ids(response) == expected
    scores = [item.score for item in response.items]
    assert scores == sorted(scores, reverse=True)
    assert not response.degraded


def test_request_history_drives_the_model_and_unknown_ids_are_reported(
    server: ServerHandle,
) -> None:
    history = ["sku-1", "no-such-item", "sku-2", "sku-3"]
    response = server.stub.Recommend(pb.RecommendRequest(history=history, k=10), timeout=5)
    assert response.source == pb.SOURCE_MODEL
    assert list(response.unknown_item_ids) == ["no-such-item"]
    assert response.history_length == 3
    assert len(response.items) == 10
    assert not set(_ids(response)) & set(history), "seen items are excluded by default"
    scores = [item.score for item in response.items]
    assert scores == sorted(scores, reverse=True)

    seen = ["sku-1", "sku-2", "sku-3"]
    allowed_seen = server.stub.Recommend(
        pb.RecommendRequest(history=history, k=5, allow=seen, exclude_seen=False), timeout=5
    )
    assert sorted(_ids(allowed_seen)) == seen
    nothing_left = server.stub.Recommend(
        pb.RecommendRequest(history=history, k=5, allow=seen), timeout=5
    )
    assert _ids(nothing_left) == []


def test_record_interactions_then_recommend_uses_cache_until_history_changes(
    server: ServerHandle,
) -> None:
    first = _record(server, "alice", ["sku-5", "sku-9", "unknown-thing"])
    assert (first.history_version, first.history_length) == (1, 3)
    assert list(first.unknown_item_ids) == ["unknown-thing"]

    request = pb.RecommendRequest(user_id="alice", k=5)
    fresh = server.stub.Recommend(request, timeout=5)
    assert fresh.source == pb.SOURCE_MODEL
    assert (fresh.history_version, fresh.history_length) == (1, 2)
    assert list(fresh.unknown_item_ids) == ["unknown-thing"]
    cached = server.stub.Recommend(request, timeout=5)
    assert cached.source == pb.SOURCE_CACHE
    assert _ids(cached) == _ids(fresh)
    other_options = server.stub.Recommend(pb.RecommendRequest(user_id="alice", k=4), timeout=5)
    assert other_options.source == pb.SOURCE_MODEL, "k is part of the cache key"

    second = _record(server, "alice", ["sku-11"])
    assert (second.history_version, second.history_length) == (2, 4)
    after = server.stub.Recommend(request, timeout=5)
    assert after.source == pb.SOURCE_MODEL, "a new event invalidates the cached answer"
    assert (after.history_version, after.history_length) == (2, 3)
    assert "sku-11" not in _ids(after)

    stored = server.stub.GetUserHistory(pb.GetUserHistoryRequest(user_id="alice"), timeout=5)
    assert list(stored.item_ids) == ["sku-5", "sku-9", "unknown-thing", "sku-11"]
    assert stored.history_version == 2
    newest = server.stub.GetUserHistory(
        pb.GetUserHistoryRequest(user_id="alice", limit=2), timeout=5
    )
    assert list(newest.item_ids) == ["unknown-thing", "sku-11"]
    nobody = server.stub.GetUserHistory(pb.GetUserHistoryRequest(user_id="bob"), timeout=5)
    assert (list(nobody.item_ids), nobody.history_version) == ([], 0)


def test_replicas_sharing_redis_see_each_others_events(start_server: StartServer) -> None:
    """Two servers on one Redis: replica A answers a repeat from its near cache, replica B records
    an event, and A's answers reflect it once Redis has pushed the invalidation (bounded wait)."""
    replica_a, replica_b = start_server(), start_server()
    _record(replica_a, "carol", ["sku-5", "sku-9"])
    request = pb.RecommendRequest(user_id="carol", k=5)
    assert replica_a.stub.Recommend(request, timeout=5).source == pb.SOURCE_MODEL
    store = replica_a.app._store
    assert store is not None and store.near is not None
    cached = replica_a.stub.Recommend(request, timeout=5)
    assert cached.source == pb.SOURCE_CACHE and cached.history_version == 1
    assert replica_a.run(lambda: store.near.version(store.keys.version("carol"))) == 1

    assert _record(replica_b, "carol", ["sku-11"]).history_version == 2
    deadline = time.monotonic() + 5
    while (answer := replica_a.stub.Recommend(request, timeout=5)).history_version != 2:
        assert answer.source == pb.SOURCE_CACHE and answer.history_version == 1
        assert time.monotonic() < deadline, "replica A never saw replica B's event"
        time.sleep(0.01)
    assert answer.source == pb.SOURCE_MODEL
    assert "sku-11" not in _ids(answer)


def test_stored_history_is_capped_to_the_newest_items(start_server: StartServer) -> None:
    server = start_server(max_history=3)
    _record(server, "carol", ["sku-1", "sku-2"])
    answer = _record(server, "carol", ["sku-3", "sku-4"])
    assert answer.history_length == 3
    stored = server.stub.GetUserHistory(pb.GetUserHistoryRequest(user_id="carol"), timeout=5)
    assert list(stored.item_ids) == ["sku-2", "sku-3", "sku-4"]


def test_a_stored_history_of_unknown_items_falls_back(server: ServerHandle) -> None:
    _record(server, "dave", ["retired-1", "retired-2"])
    response = server.stub.Recommend(pb.RecommendRequest(user_id="dave", k=3), timeout=5)
    assert response.source == pb.SOURCE_FALLBACK
    assert response.fallback_reason == pb.FALLBACK_REASON_NO_KNOWN_ITEMS
    assert list(response.unknown_item_ids) == ["retired-1", "retired-2"]
    assert len(response.items) == 3


def test_model_swap_invalidates_the_cache_and_a_bad_artifact_is_refused(
    server: ServerHandle, artifacts: Artifacts, tmp_path: Path
) -> None:
    _record(server, "erin", ["sku-1", "sku-2", "sku-3"])
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


def test_exclude_and_allow_lists(server: ServerHandle) -> None:
    history = ["sku-1", "sku-2"]
    base = server.stub.Recommend(pb.RecommendRequest(history=history, k=5), timeout=5)
    top_two = _ids(base)[:2]
    excluded = server.stub.Recommend(
        pb.RecommendRequest(history=history, k=5, exclude=[*top_two, "not-an-item"]), timeout=5
    )
    assert not set(top_two) & set(_ids(excluded))
    assert _ids(excluded)[:3] == _ids(base)[2:5]
    assert list(excluded.unknown_item_ids) == ["not-an-item"]

    allowed = server.stub.Recommend(
        pb.RecommendRequest(history=history, k=5, allow=["sku-7", "sku-8", "sku-1"]), timeout=5
    )
    assert set(_ids(allowed)) == {"sku-7", "sku-8"}, "fewer eligible items than k: fewer items"

    cold = server.stub.Recommend(
        pb.RecommendRequest(user_id="nobody", k=5, allow=["sku-7", "sku-8"]), timeout=5
    )
    assert cold.source == pb.SOURCE_FALLBACK
    assert set(_ids(cold)) == {"sku-7", "sku-8"}


def test_explanations_are_attention_weights_over_the_history(server: ServerHandle) -> None:
    history = ["sku-4", "sku-5", "sku-6"]
    response = server.stub.Recommend(
        pb.RecommendRequest(history=history, k=3, explain=True), timeout=5
    )
    plain = server.stub.Recommend(pb.RecommendRequest(history=history, k=3), timeout=5)
    assert _ids(response) == _ids(plain)
    assert not any(item.explanation for item in plain.items)
    drivers = [(e.item_id, e.position) for e in response.items[0].explanation]
    assert sorted(drivers, key=lambda pair: pair[1]) == [("sku-6", 0), ("sku-5", 1), ("sku-4", 2)]
    weights = [e.weight for e in response.items[0].explanation]
    assert weights == sorted(weights, reverse=True)
    assert sum(weights) == pytest.approx(1.0, abs=1e-4)
    for item in response.items[1:]:
        assert list(item.explanation) == list(response.items[0].explanation)


def test_recommend_batch_answers_in_order(server: ServerHandle) -> None:
    _record(server, "frank", ["sku-3", "sku-4"])
    requests = [
        pb.RecommendRequest(user_id="frank", k=3),
        pb.RecommendRequest(user_id="nobody", k=2),
        pb.RecommendRequest(history=["sku-9"], k=4),
    ]
    batch = server.stub.RecommendBatch(pb.RecommendBatchRequest(requests=requests), timeout=5)
    assert [len(r.items) for r in batch.responses] == [3, 2, 4]
    assert [r.source for r in batch.responses] == [
        pb.SOURCE_MODEL,
        pb.SOURCE_FALLBACK,
        pb.SOURCE_MODEL,
    ]
    single = server.stub.Recommend(requests[2], timeout=5)
    assert _ids(single) == _ids(batch.responses[2])


def test_concurrent_requests_share_a_forward_and_get_their_own_answers(
    start_server: StartServer,
) -> None:
    server = start_server(max_wait_ms=30, busy_in_flight=1, cache_ttl_s=0)
    requests = [
        pb.RecommendRequest(history=[f"sku-{i}", f"sku-{i + 1}"], k=3) for i in range(1, 25)
    ]
    expected = [_ids(server.stub.Recommend(request, timeout=5)) for request in requests]
    before = server.run(lambda: dict(server.app.runtime.stats))
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda r: _ids(server.stub.Recommend(r, timeout=10)), requests))
    after = server.run(lambda: dict(server.app.runtime.stats))
    assert answers == expected
    assert after["requests"] - before["requests"] == len(requests)
    assert after["batches"] - before["batches"] < len(requests), "no two requests were batched"
    assert after["largest_batch"] > 1
    assert server.run(lambda: server.app.runtime.in_flight) == 0, "a request was never uncounted"


INVALID = [
    ("k", pb.RecommendRequest(user_id="u", k=0)),
    ("k", pb.RecommendRequest(user_id="u", k=-3)),
    ("k", pb.RecommendRequest(user_id="u", k=101)),
    ("user_id", pb.RecommendRequest(k=3)),
    ("user_id", pb.RecommendRequest(user_id="bad\nid", k=3)),
    ("user_id", pb.RecommendRequest(user_id="x" * 300, k=3)),
    ("history[1]", pb.RecommendRequest(history=["sku-1", ""], k=3)),
    ("history", pb.RecommendRequest(history=["sku-1"] * 1001, k=3)),
    ("history", pb.RecommendRequest(history=["nope-1", "nope-2"], k=3)),
    ("exclude[0]", pb.RecommendRequest(user_id="u", k=3, exclude=["\x00"])),
    ("allow", pb.RecommendRequest(user_id="u", k=3, allow=["nope"])),
]


@pytest.mark.parametrize(("field", "request_"), INVALID)
def test_bad_recommend_requests_are_invalid_argument_naming_the_field(
    server: ServerHandle, field: str, request_: pb.RecommendRequest
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.Recommend(request_, timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field}:"), caught.value.details()
    assert server.run(lambda: server.app.runtime.in_flight) == 0, "a refused request still counts"


def test_other_bad_requests_are_invalid_argument(server: ServerHandle) -> None:
    cases = [
        (
            "requests[1].k",
            lambda: server.stub.RecommendBatch(
                pb.RecommendBatchRequest(
                    requests=[
                        pb.RecommendRequest(user_id="a", k=1),
                        pb.RecommendRequest(user_id="b"),
                    ]
                ),
                timeout=5,
            ),
        ),
        ("requests", lambda: server.stub.RecommendBatch(pb.RecommendBatchRequest(), timeout=5)),
        (
            "item_ids",
            lambda: server.stub.RecordInteractions(
                pb.RecordInteractionsRequest(user_id="a"), timeout=5
            ),
        ),
        (
            "user_id",
            lambda: server.stub.RecordInteractions(
                pb.RecordInteractionsRequest(item_ids=["sku-1"]), timeout=5
            ),
        ),
        (
            "limit",
            lambda: server.stub.GetUserHistory(
                pb.GetUserHistoryRequest(user_id="a", limit=-1), timeout=5
            ),
        ),
    ]
    for field, call in cases:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert caught.value.details().startswith(f"{field}:"), caught.value.details()


def test_a_deadline_shorter_than_the_batch_wait_is_honoured(start_server: StartServer) -> None:
    server = start_server(max_wait_ms=400, busy_in_flight=1, cache_ttl_s=0)
    runtime = server.app.runtime
    # Stand-ins for other requests in flight: a batch waits only while some are not queued yet.
    server.run(lambda: setattr(runtime, "in_flight", 3))
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.Recommend(pb.RecommendRequest(history=["sku-1"], k=3), timeout=0.1)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 5
    while server.run(lambda: server.app.runtime.stats["abandoned"]) == 0:
        assert time.monotonic() < deadline, "the batch never dropped the expired request"
        time.sleep(0.05)
    assert server.run(lambda: server.app.runtime.stats["requests"]) == 0, "the model ran for it"
    assert server.run(lambda: runtime.in_flight) == 3, "the expired request was never uncounted"
    server.run(lambda: setattr(runtime, "in_flight", 0))
    ok = server.stub.Recommend(pb.RecommendRequest(history=["sku-1"], k=3), timeout=5)
    assert ok.source == pb.SOURCE_MODEL


def test_health_reflection_and_shutdown(server: ServerHandle) -> None:
    health = health_pb2_grpc.HealthStub(server.channel)
    for name in ("", SERVICE_NAME, FEATURE_STORE_HEALTH):
        status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING, name

    reflection = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    answers = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {
        service.name for answer in answers for service in answer.list_services_response.service
    }
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names

    watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    stopping = asyncio.run_coroutine_threadsafe(server.app.stop(2.0), server.loop)
    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
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
