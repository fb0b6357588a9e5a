"""Every RPC fuzzed over a real channel: random bytes, and valid messages with hostile field
values. Whatever a client sends, the answer is a status that names the problem, never UNKNOWN
or INTERNAL, nothing reaches the log as a traceback, and the server keeps serving."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.proto.recsys.v1 import recommender_pb2 as pb

if TYPE_CHECKING:
    from tests.servers import ServerHandle

METHODS = {
    "Recommend": pb.RecommendResponse,
    "RecommendBatch": pb.RecommendBatchResponse,
    "RecordInteractions": pb.RecordInteractionsResponse,
    "GetUserHistory": pb.GetUserHistoryResponse,
    "DeleteUserData": pb.DeleteUserDataResponse,
    "GetModelInfo": pb.ModelInfo,
}
NEVER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ids = st.text(max_size=40) | st.sampled_from(["sku-1", "sku-2", "", "\x00", "é" * 300])


def _call(server: ServerHandle, method: str, payload: bytes) -> grpc.StatusCode:
    call = server.channel.unary_unary(
        f"/recsys.v1.Recommender/{method}",
        request_serializer=lambda raw: raw,
        response_deserializer=METHODS[method].FromString,
    )
    try:
        call(payload, timeout=10)
    except grpc.RpcError as err:
        code: grpc.StatusCode = err.code()
        return code
    return grpc.StatusCode.OK


@pytest.fixture(autouse=True)
def _no_traceback_in_the_log(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.INFO)
    yield
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("method", sorted(METHODS))
@FUZZ
@given(payload=st.binary(max_size=300))
def test_random_bytes_are_invalid_argument_at_worst(
    shared_server: ServerHandle, method: str, payload: bytes
) -> None:
    assert _call(shared_server, method, payload) not in NEVER


@FUZZ
@given(
    user=ids,
    history=st.lists(ids, max_size=30),
    exclude=st.lists(ids, max_size=5),
    allow=st.lists(ids, max_size=5),
    k=st.integers(min_value=-5, max_value=500),
    explain=st.booleans(),
)
def test_hostile_recommend_fields_are_answered_or_refused(
    shared_server: ServerHandle,
    user: str,
    history: list[str],
    exclude: list[str],
    allow: list[str],
    k: int,
    explain: bool,
) -> None:
    request = pb.RecommendRequest(
        user_id=user, history=history, exclude=exclude, allow=allow, k=k, explain=explain
    )
    code = _call(shared_server, "Recommend", request.SerializeToString())
    assert code in {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}


@FUZZ
@given(user=ids, items=st.lists(ids, max_size=8), events=st.lists(ids, max_size=8))
def test_hostile_writes_are_answered_or_refused(
    shared_server: ServerHandle, user: str, items: list[str], events: list[str]
) -> None:
    request = pb.RecordInteractionsRequest(user_id=f"fuzz-{user}", item_ids=items, event_ids=events)
    code = _call(shared_server, "RecordInteractions", request.SerializeToString())
    assert code in {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}


def test_the_server_still_serves_after_the_fuzzing(shared_server: ServerHandle) -> None:
    answer = shared_server.stub.Recommend(pb.RecommendRequest(history=["sku-1"], k=3), timeout=5)
    assert len(answer.items) == 3
