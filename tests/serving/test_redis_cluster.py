"""The server on a real three-master Redis Cluster: the same answers as on one Redis, and a killed
master costs only its own shard's users (degraded answers, never an error), until it is back.

(Every other test that uses Redis also runs on the cluster: ``redis_url`` in tests/conftest.py.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import pytest

from serving.proto.recsys.v1 import recommender_pb2 as pb
from tests.redis_cluster import LocalRedisCluster
from tests.servers import (
    Artifacts,
    ServerHandle,
    delete_namespace,
    ids,
    record,
    server_config,
    wait_for,
)

USERS = [f"cluster-user-{n}" for n in range(12)]


@pytest.fixture
def servers(
    artifacts: Artifacts, single_redis_url: str, redis_cluster: LocalRedisCluster
) -> Iterator[tuple[ServerHandle, ServerHandle]]:
    """One server on a single Redis and one on the cluster, the same artifact, one namespace."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    handles = [
        ServerHandle(server_config(redis_url=url, namespace=namespace), artifacts.first)
        for url in (single_redis_url, redis_cluster.url)
    ]
    yield handles[0], handles[1]
    for handle, url in zip(handles, (single_redis_url, redis_cluster.url), strict=True):
        handle.stop()
        delete_namespace(url, namespace)


def _answer(server: ServerHandle, user: str) -> pb.RecommendResponse:
    return server.stub.Recommend(pb.RecommendRequest(user_id=user, k=5, explain=True), timeout=5)


def test_the_cluster_answers_as_one_redis_does(
    servers: tuple[ServerHandle, ServerHandle], redis_cluster: LocalRedisCluster
) -> None:
    single, cluster = servers
    namespace = cluster.app.config.namespace
    shards = {redis_cluster.port_of(f"{namespace}:h:{{{user}}}") for user in USERS}
    assert len(shards) == 3, "the users' keys spread over every master"
    for n, user in enumerate(USERS):
        items = [f"sku-{(n * 7 + j) % 40 + 1}" for j in range(3)]
        for server in servers:
            recorded = record(server, user, items)
            assert (recorded.history_version, recorded.history_length) == (1, 3)
    for user in USERS:
        expected, got = _answer(single, user), _answer(cluster, user)
        assert (got.source, got.degraded, got.history_version) == (pb.SOURCE_MODEL, False, 1)
        assert ids(got) == ids(expected)
        assert [i.score for i in got.items] == pytest.approx([i.score for i in expected.items])
        assert got.items[0].explanation == expected.items[0].explanation
        cached = _answer(cluster, user)
        assert cached.source == pb.SOURCE_CACHE and ids(cached) == ids(expected)
    history = cluster.stub.GetUserHistory(pb.GetUserHistoryRequest(user_id=USERS[0]), timeout=5)
    assert len(history.item_ids) == 3
    deleted = cluster.stub.DeleteUserData(pb.DeleteUserDataRequest(user_id=USERS[0]), timeout=5)
    assert (deleted.deleted_items, deleted.deleted_answers) == (3, 1)


def test_a_killed_master_degrades_only_its_shard_until_it_returns(
    servers: tuple[ServerHandle, ServerHandle], redis_cluster: LocalRedisCluster
) -> None:
    _, cluster = servers
    namespace = cluster.app.config.namespace
    port_of = {user: redis_cluster.port_of(f"{namespace}:h:{{{user}}}") for user in USERS}
    lost = USERS[0]
    kept = next(user for user in USERS if port_of[user] != port_of[lost])
    for user in (lost, kept):
        record(cluster, user, ["sku-1", "sku-2"])
    before = _answer(cluster, lost)

    redis_cluster.stop_node(port_of[lost])
    try:
        degraded = _answer(cluster, lost)
        assert degraded.degraded and degraded.source == pb.SOURCE_FALLBACK
        assert degraded.fallback_reason == pb.FALLBACK_REASON_FEATURE_STORE_UNAVAILABLE
        assert len(degraded.items) == 5
        with_history = cluster.stub.Recommend(
            pb.RecommendRequest(user_id=lost, history=["sku-3"], k=5), timeout=5
        )
        assert (with_history.source, with_history.degraded) == (pb.SOURCE_MODEL, True)
        with pytest.raises(grpc.RpcError) as caught:
            record(cluster, lost, ["sku-4"])
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        other = _answer(cluster, kept)  # another master's users are served as before
        assert (other.degraded, other.history_version) == (False, 1)
        assert record(cluster, kept, ["sku-5"]).history_version == 2
    finally:
        redis_cluster.start_node(port_of[lost])  # its append-only file brings the data back
        redis_cluster.wait_until_ok()

    def recovered() -> bool:
        answer = _answer(cluster, lost)
        return not answer.degraded and answer.history_version == 1

    wait_for(recovered, "the restarted master's users to be served again")
    assert ids(_answer(cluster, lost)) == ids(before)
    assert record(cluster, lost, ["sku-6"]).history_version == 2
