"""Batches piece by piece: answers serialized in pieces are the whole message's bytes, and a
request decoded request by request is the whole decode."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.wire import LazyBatch, batch_answers, repeated_field, split_repeated


def _answer(items: int, explained: int) -> pb.RecommendResponse:
    explanation = [
        pb.HistoryWeight(item_id=f"h{i}", weight=0.5, position=i) for i in range(explained)
    ]
    return pb.RecommendResponse(
        model_version="v1",
        items=[
            pb.ScoredItem(item_id=f"sku-{i}", score=float(i), explanation=explanation)
            for i in range(items)
        ],
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 120), st.integers(0, 12)), max_size=6))
def test_a_repeated_field_in_pieces_is_the_message_serialized_whole(
    shapes: list[tuple[int, int]],
) -> None:
    # Empty answers (length 0), short ones (1-byte lengths) and ones over 16 KB (3-byte lengths).
    answers = [_answer(items, explained) for items, explained in shapes]
    whole = pb.RecommendBatchResponse(responses=answers).SerializeToString()
    halves = batch_answers(answers[:2]) + batch_answers(answers[2:])
    assert halves == whole
    assert list(pb.RecommendBatchResponse.FromString(halves).responses) == answers


def test_lengths_use_as_many_varint_bytes_as_they_need() -> None:
    big = _answer(120, 12)
    size = big.ByteSize()
    assert size > 16_384  # a three-byte length
    encoded = batch_answers([big])
    assert encoded[0] == 0x0A  # field 1, length-delimited
    assert encoded == pb.RecommendBatchResponse(responses=[big]).SerializeToString()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(st.text(min_size=1, max_size=8), max_size=30), st.integers(1, 300)),
        max_size=8,
    )
)
def test_a_batch_decoded_request_by_request_equals_the_whole_decode(
    shapes: list[tuple[list[str], int]],
) -> None:
    batch = pb.RecommendBatchRequest(
        requests=[pb.RecommendRequest(history=history, k=k) for history, k in shapes]
    )
    lazy = LazyBatch.decode(batch.SerializeToString())
    assert isinstance(lazy, LazyBatch)
    assert len(lazy.requests) == len(shapes)
    assert [lazy.requests[i] for i in range(len(shapes))] == list(batch.requests)
    assert lazy.requests[1:] == list(batch.requests[1:])


def test_a_batch_with_any_other_field_is_decoded_whole() -> None:
    one = pb.RecommendBatchRequest(requests=[pb.RecommendRequest(k=3)]).SerializeToString()
    unknown_field = b"\x10\x07"  # field 2 (not in the message today), varint 7
    decoded = LazyBatch.decode(one + unknown_field)
    assert isinstance(decoded, pb.RecommendBatchRequest)
    assert decoded.requests[0].k == 3


@pytest.mark.parametrize("payload", [b"\x0a\x10short", b"\x0a", b"\xff\xff\xff"])
def test_bytes_that_end_inside_an_entry_do_not_decode(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        LazyBatch.decode(payload)


def test_split_entries_are_the_field_payloads() -> None:
    entries = [b"", b"x" * 200, b"abc"]
    assert split_repeated(b"".join(_field(1, e) for e in entries), 1) == entries
    assert split_repeated(_field(1, b"a") + _field(3, b"b"), 1) is None


def _field(number: int, payload: bytes) -> bytes:
    return repeated_field(number, [_Raw(payload)])


class _Raw:
    """Stands in for a message whose serialization is ``payload``."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def SerializeToString(self) -> bytes:  # noqa: N802 - the protobuf method name
        return self.payload
