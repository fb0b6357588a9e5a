"""The Recommender servicer over a real gRPC channel: model info, recorded and stored histories,
batches answered in order, and the caller's deadline carried to the model batch."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import grpc
import pytest

from recsys.export import load_artifact
from serving.proto.recsys.v1 import recommender_pb2 as pb
from tests.servers import ids, record

if TYPE_CHECKING:
    from tests.servers import Artifacts, ServerHandle, StartServer


def test_model_info_is_the_artifact_manifest(
    shared_server: ServerHandle, artifacts: Artifacts
) -> None:
    info = shared_server.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
    artifact = load_artifact(artifacts.first)
    assert info.model_version == artifact.model_version
    assert info.format_version == "recsys.artifact/v1"
    assert (info.max_len, info.num_items) == (artifact.max_len, artifact.num_items)
    assert json.loads(info.manifest_json)["model_version"] == artifact.model_version
    assert info.loaded_at


def test_recorded_history_is_returned_oldest_first_and_limited_to_the_newest(
    shared_server: ServerHandle,
) -> None:
    server = shared_server
    record(server, "alice", ["sku-5", "sku-9", "unknown-thing"])
    record(server, "alice", ["sku-11"])
    stored = server.stub.GetUserHistory(pb.GetUserHistoryRequest(user_id="alice"), timeout=5)
    assert list(stored.item_ids) == ["sku-5", "sku-9", "unknown-thing", "sku-11"]
    assert stored.history_version == 2
    newest = server.stub.GetUserHistory(
        pb.GetUserHistoryRequest(user_id="alice", limit=2), timeout=5
    )
    assert list(newest.item_ids) == ["unknown-thing", "sku-11"]


def test_a_user_without_history_has_an_empty_one_at_version_0(
    shared_server: ServerHandle,
) -> None:
    nobody = shared_server.stub.GetUserHistory(pb.GetUserHistoryRequest(user_id="bob"), timeout=5)
    assert (list(nobody.item_ids), nobody.history_version) == ([], 0)


def test_stored_history_is_capped_to_the_newest_items(start_server: StartServer) -> None:
    server = start_server(max_history=3)
    record(server, "carol", ["sku-1", "sku-2"])
    answer = record(server, "carol", ["sku-3", "sku-4"])
    assert answer.history_length == 3
    stored = server.stub.GetUserHistory(pb.GetUserHistoryRequest(user_id="carol"), timeout=5)
    assert list(stored.item_ids) == ["sku-2", "sku-3", "sku-4"]


def test_recommend_batch_answers_in_order(shared_server: ServerHandle) -> None:
    server = shared_server
    record(server, "frank", ["sku-3", "sku-4"])
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
    assert ids(single) == ids(batch.responses[2])


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
