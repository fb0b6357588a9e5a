"""Errors reach the client as gRPC statuses: a refused request is INVALID_ARGUMENT with a message
that starts with the offending field, and leaves nothing counted in flight."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import pytest

from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from tests.servers import ServerHandle


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
    shared_server: ServerHandle, field: str, request_: pb.RecommendRequest
) -> None:
    server = shared_server
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.Recommend(request_, timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(caught.value.details()).startswith(f"{field}:"), caught.value.details()
    assert server.run(lambda: server.app.runtime.in_flight) == 0, "a refused request still counts"


OTHER_INVALID: list[tuple[str, Callable[[pb_grpc.RecommenderStub], object]]] = [
    (
        "requests[1].k",
        lambda stub: stub.RecommendBatch(
            pb.RecommendBatchRequest(
                requests=[
                    pb.RecommendRequest(user_id="a", k=1),
                    pb.RecommendRequest(user_id="b"),
                ]
            ),
            timeout=5,
        ),
    ),
    ("requests", lambda stub: stub.RecommendBatch(pb.RecommendBatchRequest(), timeout=5)),
    (
        "item_ids",
        lambda stub: stub.RecordInteractions(pb.RecordInteractionsRequest(user_id="a"), timeout=5),
    ),
    (
        "user_id",
        lambda stub: stub.RecordInteractions(
            pb.RecordInteractionsRequest(item_ids=["sku-1"]), timeout=5
        ),
    ),
    (
        "limit",
        lambda stub: stub.GetUserHistory(
            pb.GetUserHistoryRequest(user_id="a", limit=-1), timeout=5
        ),
    ),
]


@pytest.mark.parametrize(
    ("field", "call"), OTHER_INVALID, ids=["batch-item", "empty-batch", "record", "user", "limit"]
)
def test_other_bad_requests_are_invalid_argument(
    shared_server: ServerHandle,
    field: str,
    call: Callable[[pb_grpc.RecommenderStub], object],
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call(shared_server.stub)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
    assert str(caught.value.details()).startswith(f"{field}:"), caught.value.details()


UNDECODABLE = [
    b"\x0a\x02\xff\xfe\x18\x05",  # user_id with invalid UTF-8, then k = 5
    b"\xff\xff\xff\xff",  # not a protobuf message at all
    b"\x0a\x10short",  # a length that runs past the end
]


@pytest.mark.parametrize("method", ["Recommend", "RecommendBatch", "RecordInteractions"])
def test_undecodable_requests_are_invalid_argument_logged_once_without_traceback(
    shared_server: ServerHandle, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    raw = shared_server.channel.unary_unary(f"/recsys.v1.Recommender/{method}")
    with caplog.at_level(logging.INFO, logger="serving"):
        for payload in UNDECODABLE * 2:
            with pytest.raises(grpc.RpcError) as caught:
                raw(payload, timeout=5)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert str(caught.value.details()).startswith("request: the bytes are not a valid")
    records = [r for r in caplog.records if r.name.startswith("serving")]
    assert len(records) == 1, [r.getMessage() for r in records]  # rate-limited: one line
    assert records[0].exc_info is None and "undecodable" in records[0].getMessage()
    answer = shared_server.stub.Recommend(pb.RecommendRequest(history=["sku-1"], k=2), timeout=5)
    assert len(answer.items) == 2  # the server is unharmed


def test_a_batch_whose_one_request_does_not_decode_names_it(shared_server: ServerHandle) -> None:
    # The batch splits into its requests' bytes (serving.wire); the second holds invalid UTF-8.
    good = pb.RecommendRequest(history=["sku-1"], k=2).SerializeToString()
    bad = b"\x0a\x02\xff\xfe\x18\x05"
    payload = b"".join(b"\x0a" + bytes([len(entry)]) + entry for entry in (good, bad))
    raw = shared_server.channel.unary_unary("/recsys.v1.Recommender/RecommendBatch")
    with pytest.raises(grpc.RpcError) as caught:
        raw(payload, timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(caught.value.details()).startswith("requests[1]: is not a valid RecommendRequest")
