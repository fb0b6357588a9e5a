"""Request checks and the cache key's options digest."""

from __future__ import annotations

import pytest

from serving.config import ServeConfig
from serving.errors import InvalidArgument
from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.validation import RecommendQuery, parse_batch, parse_recommend

CONFIG = ServeConfig(max_k=20, max_request_items=3, max_id_length=5)


def _query(**values: object) -> RecommendQuery:
    base: dict[str, object] = {
        "user_id": "u",
        "history": [],
        "k": 10,
        "exclude_seen": True,
        "exclude": [],
        "allow": [],
        "explain": False,
    }
    base.update(values)
    return RecommendQuery(**base)  # type: ignore[arg-type]


def test_the_digest_tells_every_option_apart() -> None:
    queries = [
        _query(),
        _query(k=11),
        _query(exclude_seen=False),
        _query(explain=True),
        _query(history=["a", "b"]),
        _query(history=["a"], exclude=["b"]),
        _query(history=["ab"]),
        _query(allow=["a", "b"]),
    ]
    digests = {query.options_digest() for query in queries}
    assert len(digests) == len(queries)
    assert _query(user_id="other").options_digest() == _query().options_digest()


def test_the_largest_k_is_accepted_and_exclude_seen_defaults_to_true() -> None:
    query = parse_recommend(pb.RecommendRequest(user_id="u", k=20), CONFIG)
    assert query.exclude_seen is True
    off = parse_recommend(pb.RecommendRequest(user_id="u", k=1, exclude_seen=False), CONFIG)
    assert off.exclude_seen is False


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (pb.RecommendRequest(user_id="u", k=21), r"^k: must be between 1 and 20, got 21$"),
        (
            pb.RecommendRequest(user_id="u", k=1, allow=list("abcd")),
            r"^allow: holds 4 ids, at most 3",
        ),
        (pb.RecommendRequest(k=1, history=["abcdef"]), r"^history\[0\]: is 6 characters long"),
    ],
    ids=["k", "allow", "history"],
)
def test_limits_are_refused_naming_the_field(request_: pb.RecommendRequest, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_recommend(request_, CONFIG)


def test_a_bad_request_of_a_batch_is_named_by_its_position() -> None:
    with pytest.raises(InvalidArgument, match=r"^requests\[1\]\.user_id: the request has neither"):
        parse_batch(
            pb.RecommendBatchRequest(
                requests=[pb.RecommendRequest(user_id="u", k=1), pb.RecommendRequest(k=1)]
            ),
            CONFIG,
        )
