"""The answer to a Recommend request, over a real gRPC channel with a real Redis and artifacts:
the model on the stored and the request's history, popularity fallbacks, the result cache,
exclude and allow lists, explanations, and requests batched into one forward."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import grpc
import pytest

from recsys.export import load_artifact
from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.store.redis_clients import sync_client
from tests.servers import ids, on_cluster, record

if TYPE_CHECKING:
    from tests.servers import Artifacts, ServerHandle, StartServer


def test_unknown_user_gets_the_most_popular_items(
    shared_server: ServerHandle, artifacts: Artifacts
) -> None:
    response = shared_server.stub.Recommend(pb.RecommendRequest(user_id="nobody", k=5), timeout=5)
    artifact = load_artifact(artifacts.first)
    expected = [artifact.item_ids[index] for index, _ in artifact.popular(5)]
    assert response.source == pb.SOURCE_FALLBACK
    assert response.fallback_reason == pb.FALLBACK_REASON_COLD_START
    assert ids(response) == expected
    scores = [item.score for item in response.items]
    assert scores == sorted(scores, reverse=True)
    assert not response.degraded


HISTORY = ["sku-1", "no-such-item", "sku-2", "sku-3"]
"""A request's history: three known items and one the model does not know."""
SEEN = ["sku-1", "sku-2", "sku-3"]


def test_request_history_drives_the_model_and_unknown_ids_are_reported(
    shared_server: ServerHandle,
) -> None:
    response = shared_server.stub.Recommend(pb.RecommendRequest(history=HISTORY, k=10), timeout=5)
    assert response.source == pb.SOURCE_MODEL
    assert list(response.unknown_item_ids) == ["no-such-item"]
    assert response.history_length == 3
    assert len(response.items) == 10
    assert not set(ids(response)) & set(HISTORY), "seen items are excluded by default"
    scores = [item.score for item in response.items]
    assert scores == sorted(scores, reverse=True)


def test_seen_items_are_offered_when_exclude_seen_is_off(shared_server: ServerHandle) -> None:
    allowed_seen = shared_server.stub.Recommend(
        pb.RecommendRequest(history=HISTORY, k=5, allow=SEEN, exclude_seen=False), timeout=5
    )
    assert sorted(ids(allowed_seen)) == SEEN


def test_an_allow_list_of_seen_items_leaves_nothing_to_offer(shared_server: ServerHandle) -> None:
    nothing_left = shared_server.stub.Recommend(
        pb.RecommendRequest(history=HISTORY, k=5, allow=SEEN), timeout=5
    )
    assert ids(nothing_left) == []


def test_record_interactions_then_recommend_uses_cache_until_history_changes(
    shared_server: ServerHandle,
) -> None:
    server = shared_server
    first = record(server, "alice", ["sku-5", "sku-9", "unknown-thing"])
    assert (first.history_version, first.history_length) == (1, 3)
    assert list(first.unknown_item_ids) == ["unknown-thing"]

    request = pb.RecommendRequest(user_id="alice", k=5)
    fresh = server.stub.Recommend(request, timeout=5)
    assert fresh.source == pb.SOURCE_MODEL
    assert (fresh.history_version, fresh.history_length) == (1, 2)
    assert list(fresh.unknown_item_ids) == ["unknown-thing"]
    cached = server.stub.Recommend(request, timeout=5)
    assert cached.source == pb.SOURCE_CACHE
    assert ids(cached) == ids(fresh)
    other_options = server.stub.Recommend(pb.RecommendRequest(user_id="alice", k=4), timeout=5)
    assert other_options.source == pb.SOURCE_MODEL, "k is part of the cache key"

    second = record(server, "alice", ["sku-11"])
    assert (second.history_version, second.history_length) == (2, 4)
    after = server.stub.Recommend(request, timeout=5)
    assert after.source == pb.SOURCE_MODEL, "a new event invalidates the cached answer"
    assert (after.history_version, after.history_length) == (2, 3)
    assert "sku-11" not in ids(after)


def test_replicas_sharing_redis_see_each_others_events(
    start_server: StartServer, redis_url: str
) -> None:
    """Two servers on one Redis: replica A answers a repeat from its near cache, replica B records
    an event, and A's answers reflect it once Redis has pushed the invalidation (bounded wait).
    On a Redis Cluster (no near cache) A's next answer reflects it at once."""
    replica_a, replica_b = start_server(), start_server()
    record(replica_a, "carol", ["sku-5", "sku-9"])
    request = pb.RecommendRequest(user_id="carol", k=5)
    assert replica_a.stub.Recommend(request, timeout=5).source == pb.SOURCE_MODEL
    store = replica_a.app._store
    assert store is not None and (store.near is None) == on_cluster(redis_url)
    cached = replica_a.stub.Recommend(request, timeout=5)
    assert cached.source == pb.SOURCE_CACHE and cached.history_version == 1
    if store.near is not None:
        near = store.near
        assert replica_a.run(lambda: near.version(store.keys.version("carol"))) == 1

    assert record(replica_b, "carol", ["sku-11"]).history_version == 2
    deadline = time.monotonic() + 5
    while (answer := replica_a.stub.Recommend(request, timeout=5)).history_version != 2:
        assert answer.source == pb.SOURCE_CACHE and answer.history_version == 1
        assert time.monotonic() < deadline, "replica A never saw replica B's event"
        time.sleep(0.01)
    assert answer.source == pb.SOURCE_MODEL
    assert "sku-11" not in ids(answer)


def test_a_stored_history_of_unknown_items_falls_back(shared_server: ServerHandle) -> None:
    record(shared_server, "dave", ["retired-1", "retired-2"])
    response = shared_server.stub.Recommend(pb.RecommendRequest(user_id="dave", k=3), timeout=5)
    assert response.source == pb.SOURCE_FALLBACK
    assert response.fallback_reason == pb.FALLBACK_REASON_NO_KNOWN_ITEMS
    assert list(response.unknown_item_ids) == ["retired-1", "retired-2"]
    assert len(response.items) == 3


def test_an_exclude_list_removes_items_and_reports_unknown_ones(
    shared_server: ServerHandle,
) -> None:
    history = ["sku-1", "sku-2"]
    base = shared_server.stub.Recommend(pb.RecommendRequest(history=history, k=5), timeout=5)
    top_two = ids(base)[:2]
    excluded = shared_server.stub.Recommend(
        pb.RecommendRequest(history=history, k=5, exclude=[*top_two, "not-an-item"]), timeout=5
    )
    assert not set(top_two) & set(ids(excluded))
    assert ids(excluded)[:3] == ids(base)[2:5]
    assert list(excluded.unknown_item_ids) == ["not-an-item"]


def test_an_allow_list_with_fewer_eligible_items_than_k_gives_fewer(
    shared_server: ServerHandle,
) -> None:
    allowed = shared_server.stub.Recommend(
        pb.RecommendRequest(history=["sku-1", "sku-2"], k=5, allow=["sku-7", "sku-8", "sku-1"]),
        timeout=5,
    )
    assert set(ids(allowed)) == {"sku-7", "sku-8"}, "fewer eligible items than k: fewer items"


def test_the_popularity_fallback_honours_the_allow_list(shared_server: ServerHandle) -> None:
    cold = shared_server.stub.Recommend(
        pb.RecommendRequest(user_id="nobody", k=5, allow=["sku-7", "sku-8"]), timeout=5
    )
    assert cold.source == pb.SOURCE_FALLBACK
    assert set(ids(cold)) == {"sku-7", "sku-8"}


def test_explanations_are_attention_weights_over_the_history(shared_server: ServerHandle) -> None:
    history = ["sku-4", "sku-5", "sku-6"]
    response = shared_server.stub.Recommend(
        pb.RecommendRequest(history=history, k=3, explain=True), timeout=5
    )
    plain = shared_server.stub.Recommend(pb.RecommendRequest(history=history, k=3), timeout=5)
    assert ids(response) == ids(plain)
    assert not any(item.explanation for item in plain.items)
    drivers = [(e.item_id, e.position) for e in response.items[0].explanation]
    assert sorted(drivers, key=lambda pair: pair[1]) == [("sku-6", 0), ("sku-5", 1), ("sku-4", 2)]
    weights = [e.weight for e in response.items[0].explanation]
    assert weights == sorted(weights, reverse=True)
    assert sum(weights) == pytest.approx(1.0, abs=1e-4)
    for item in response.items[1:]:
        assert list(item.explanation) == list(response.items[0].explanation)


def test_concurrent_requests_share_a_forward_and_get_their_own_answers(
    start_server: StartServer,
) -> None:
    server = start_server(max_wait_ms=30, busy_in_flight=1, cache_ttl_s=0)
    requests = [
        pb.RecommendRequest(history=[f"sku-{i}", f"sku-{i + 1}"], k=3) for i in range(1, 25)
    ]
    expected = [ids(server.stub.Recommend(request, timeout=5)) for request in requests]
    before = server.run(lambda: dict(server.app.runtime.stats))
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda r: ids(server.stub.Recommend(r, timeout=10)), requests))
    after = server.run(lambda: dict(server.app.runtime.stats))
    assert answers == expected
    assert after["requests"] - before["requests"] == len(requests)
    assert after["batches"] - before["batches"] < len(requests), "no two requests were batched"
    assert after["largest_batch"] > 1
    assert server.run(lambda: server.app.runtime.in_flight) == 0, "a request was never uncounted"


def test_a_server_on_an_indexed_artifact_answers_as_the_exact_one(
    shared_server: ServerHandle, start_server: StartServer, artifacts: Artifacts
) -> None:
    indexed = start_server(artifacts.indexed)
    requests = [
        pb.RecommendRequest(history=HISTORY, k=10, explain=True),
        pb.RecommendRequest(history=HISTORY, k=5, exclude=["sku-7", "sku-8"]),
        pb.RecommendRequest(history=HISTORY, k=5, allow=["sku-4", "sku-5", "sku-6"]),
    ]
    explained = indexed.stub.Recommend(requests[0], timeout=5)
    assert explained.items and explained.items[0].explanation  # explanations keep working
    for request in requests:
        exact = shared_server.stub.Recommend(request, timeout=5)
        approximate = indexed.stub.Recommend(request, timeout=5)
        assert approximate.source in (pb.SOURCE_MODEL, pb.SOURCE_CACHE)
        assert ids(approximate) == ids(exact)
        assert [i.score for i in approximate.items] == pytest.approx(
            [i.score for i in exact.items], abs=1e-5
        )
        for mine, theirs in zip(approximate.items, exact.items, strict=True):
            assert [(e.item_id, e.position) for e in mine.explanation] == [
                (e.item_id, e.position) for e in theirs.explanation
            ]
    assert not set(ids(indexed.stub.Recommend(requests[1], timeout=5))) & {"sku-7", "sku-8"}


def test_a_retried_record_with_event_ids_is_stored_once(shared_server: ServerHandle) -> None:
    stub = shared_server.stub
    request = pb.RecordInteractionsRequest(
        user_id="retrier", item_ids=["sku-1", "sku-2"], event_ids=["click-1", "click-2"]
    )
    first = stub.RecordInteractions(request, timeout=5)
    retried = stub.RecordInteractions(request, timeout=5)
    assert (first.history_version, first.duplicate_events) == (1, 0)
    assert (retried.history_version, retried.history_length) == (1, 2)
    assert retried.duplicate_events == 2
    history = stub.GetUserHistory(pb.GetUserHistoryRequest(user_id="retrier"), timeout=5)
    assert list(history.item_ids) == ["sku-1", "sku-2"]
    with pytest.raises(grpc.RpcError) as refused:
        stub.RecordInteractions(
            pb.RecordInteractionsRequest(user_id="retrier", item_ids=["a", "b"], event_ids=["x"]),
            timeout=5,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "event_ids" in (refused.value.details() or "")


def test_a_full_queue_answers_resource_exhausted_with_a_pushback(
    start_server: StartServer,
) -> None:
    server = start_server(max_queue=1, cache_ttl_s=0)
    batch = pb.RecommendBatchRequest(
        requests=[pb.RecommendRequest(history=HISTORY, k=5) for _ in range(30)]
    )
    with pytest.raises(grpc.RpcError) as full:
        server.stub.RecommendBatch(batch, timeout=10)
    assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max-queue" in (full.value.details() or "")
    trailing = dict(full.value.trailing_metadata() or ())
    assert int(trailing["grpc-retry-pushback-ms"]) >= 10
    assert server.stub.Recommend(pb.RecommendRequest(history=HISTORY, k=5), timeout=5).items


def test_deleting_a_users_data_removes_history_event_ids_and_cached_answers(
    shared_server: ServerHandle, redis_url: str
) -> None:
    stub = shared_server.stub
    user = "forget*me"  # a glob character: only this user's keys may go
    stub.RecordInteractions(
        pb.RecordInteractionsRequest(
            user_id=user, item_ids=["sku-1", "sku-2"], event_ids=["a", "b"]
        ),
        timeout=5,
    )
    record(shared_server, "forget-me-not", ["sku-3"])
    for k in (3, 5):
        stub.Recommend(pb.RecommendRequest(user_id=user, k=k), timeout=5)  # two cached answers
    kept = stub.Recommend(pb.RecommendRequest(user_id="forget-me-not", k=3), timeout=5)
    deleted = stub.DeleteUserData(pb.DeleteUserDataRequest(user_id=user), timeout=5)
    assert (deleted.deleted_items, deleted.deleted_answers) == (2, 2)
    client = sync_client(redis_url)
    try:
        namespace = shared_server.app.config.namespace
        keys = [key.decode() for key in client.scan_iter(match=f"{namespace}:*")]
    finally:
        client.close()
    assert [key for key in keys if "{forget*me}" in key] == [f"{namespace}:v:{{forget*me}}"]
    assert any("{forget-me-not}" in key for key in keys)  # another user's keys stay
    history = stub.GetUserHistory(pb.GetUserHistoryRequest(user_id=user), timeout=5)
    assert list(history.item_ids) == []
    after = stub.Recommend(pb.RecommendRequest(user_id=user, k=3), timeout=5)
    assert after.source == pb.SOURCE_FALLBACK  # no history left, no cached answer served
    again = stub.RecordInteractions(
        pb.RecordInteractionsRequest(user_id=user, item_ids=["sku-1"], event_ids=["a"]), timeout=5
    )
    assert again.duplicate_events == 0  # its event ids went too
    same = stub.Recommend(pb.RecommendRequest(user_id="forget-me-not", k=3), timeout=5)
    assert same.source == pb.SOURCE_CACHE and ids(same) == ids(kept)
