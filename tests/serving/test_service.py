"""The Recommender servicer over a real gRPC channel: model info, recorded and stored histories,
batches answered in order, and the caller's deadline carried to the model batch."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

import grpc
import pytest

from recsys.export import load_artifact
from serving.config import ServeConfig
from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.service import RecommenderService
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


def test_a_batch_answered_in_pieces_equals_its_requests_answered_alone(
    start_server: StartServer,
) -> None:
    # Five pieces of two: each piece's answers are serialized on their own and joined.
    server = start_server(fair_share=2, cache_ttl_s=0)
    requests = [
        pb.RecommendRequest(history=[f"sku-{i}", f"sku-{i + 1}"], k=4, explain=i % 2 == 0)
        for i in range(1, 10)
    ]
    requests.append(pb.RecommendRequest(user_id="nobody", k=2))
    batch = server.stub.RecommendBatch(pb.RecommendBatchRequest(requests=requests), timeout=10)
    assert len(batch.responses) == len(requests)
    for request, answer in zip(requests, batch.responses, strict=True):
        alone = server.stub.Recommend(request, timeout=5)
        assert ids(answer) == ids(alone)
        assert answer.source == alone.source
        # Scores of a batched forward may differ from a lone one's in the last float bits.
        assert [i.score for i in answer.items] == pytest.approx([i.score for i in alone.items])
        for mine, theirs in zip(answer.items, alone.items, strict=True):
            assert [(e.item_id, e.position) for e in mine.explanation] == [
                (e.item_id, e.position) for e in theirs.explanation
            ]
            assert [e.weight for e in mine.explanation] == pytest.approx(
                [e.weight for e in theirs.explanation], abs=1e-5
            )
    assert batch.responses[1].items[0].explanation  # i = 2 asked for one
    assert batch.responses[-1].source == pb.SOURCE_FALLBACK


def test_a_batch_piece_waits_for_single_calls_in_flight_but_not_forever() -> None:
    # The service's own scheduling, without a server: no engine call is made.
    async def scenario() -> None:
        service = RecommenderService(ServeConfig(batch_yield_ms=200), engine=None)  # type: ignore[arg-type]
        await asyncio.wait_for(service._make_way(), 1)  # no single in flight: at once
        service._singles_in_flight = 1
        service._no_singles.clear()
        waiting = asyncio.ensure_future(service._make_way())
        await asyncio.sleep(0.05)
        assert not waiting.done(), "the piece went ahead of a single in flight"
        service._singles_in_flight = 0
        service._no_singles.set()
        await asyncio.wait_for(waiting, 1)  # the single finished: the piece goes
        service._singles_in_flight = 1
        service._no_singles.clear()
        started = time.monotonic()
        await asyncio.wait_for(service._make_way(), 2)  # a single that never ends: 200 ms
        assert 0.15 < time.monotonic() - started < 1.5

    asyncio.run(scenario())
