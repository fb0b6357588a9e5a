"""Request checks: every bad field becomes ``InvalidArgument`` naming it (``requests[2].k: ...``).

Ids are non-empty printable text (no control characters or line breaks) of at most
``max_id_length`` characters; lists hold at most ``max_request_items`` ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from serving.config import ServeConfig
from serving.errors import InvalidArgument
from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.wire import LazyBatch


@dataclass(slots=True)
class RecommendQuery:
    """A checked ``RecommendRequest``; ``field`` prefixes error messages (``requests[3].``)."""

    user_id: str | None
    history: list[str]
    k: int
    exclude_seen: bool
    exclude: list[str]
    allow: list[str]
    explain: bool
    field: str = ""

    def options_digest(self) -> str:
        """A short digest of everything except the user that shapes the answer (cache key)."""
        # \x1f and \x1e cannot occur inside an id (ids are printable): the encoding is unambiguous.
        payload = "\x1e".join(
            (
                f"{self.k}\x1f{int(self.exclude_seen)}\x1f{int(self.explain)}",
                "\x1f".join(self.history),
                "\x1f".join(self.exclude),
                "\x1f".join(self.allow),
            )
        )
        return hashlib.blake2b(payload.encode(), digest_size=12).hexdigest()


def check_id(value: str, field: str, config: ServeConfig) -> str:
    if not value:
        raise InvalidArgument(field, "must not be empty")
    if len(value) > config.max_id_length:
        raise InvalidArgument(
            field, f"is {len(value)} characters long, at most {config.max_id_length} are allowed"
        )
    if not value.isprintable():
        raise InvalidArgument(field, f"{value!r} contains control or non-printable characters")
    return value


def check_ids(values: Sequence[str], field: str, config: ServeConfig) -> list[str]:
    if not values:  # the common case for most lists of a request; skips the copy
        return []
    if len(values) > config.max_request_items:
        raise InvalidArgument(
            field, f"holds {len(values)} ids, at most {config.max_request_items} are allowed"
        )
    limit = config.max_id_length
    checked = list(values)
    for position, value in enumerate(checked):
        if not value or len(value) > limit or not value.isprintable():
            check_id(value, f"{field}[{position}]", config)
    return checked


def check_k(k: int, field: str, config: ServeConfig) -> int:
    if not 1 <= k <= config.max_k:
        raise InvalidArgument(field, f"must be between 1 and {config.max_k}, got {k}")
    return k


def parse_recommend(
    request: pb.RecommendRequest, config: ServeConfig, prefix: str = ""
) -> RecommendQuery:
    """Check a RecommendRequest; raises ``InvalidArgument`` naming the first bad field."""
    user_id = request.user_id
    history = request.history
    if not user_id and not history:
        raise InvalidArgument(
            f"{prefix}user_id", "the request has neither a user_id nor a history: give one"
        )
    return RecommendQuery(
        user_id=check_id(user_id, f"{prefix}user_id", config) if user_id else None,
        history=check_ids(history, f"{prefix}history", config),
        k=check_k(request.k, f"{prefix}k", config),
        exclude_seen=request.exclude_seen if request.HasField("exclude_seen") else True,
        exclude=check_ids(request.exclude, f"{prefix}exclude", config),
        allow=check_ids(request.allow, f"{prefix}allow", config),
        explain=request.explain,
        field=prefix,
    )


BatchRequest = pb.RecommendBatchRequest | LazyBatch
"""A batch as grpc hands it to the handler: decoded, or decoded request by request."""


def parse_batch(request: BatchRequest, config: ServeConfig) -> list[RecommendQuery]:
    check_batch_size(request, config)
    return parse_batch_part(request, config, 0, len(request.requests))


def check_batch_size(request: BatchRequest, config: ServeConfig) -> None:
    count = len(request.requests)
    if count == 0:
        raise InvalidArgument("requests", "must hold at least one request")
    if count > config.max_batch_requests:
        raise InvalidArgument(
            "requests", f"holds {count} requests, at most {config.max_batch_requests} are allowed"
        )


def parse_batch_part(
    request: BatchRequest, config: ServeConfig, start: int, stop: int
) -> list[RecommendQuery]:
    """Requests ``start:stop`` of a batch, checked (errors name ``requests[i]``)."""
    queries = []
    for position in range(start, min(stop, len(request.requests))):
        try:
            single = request.requests[position]
        except DecodeError as err:
            raise InvalidArgument(
                f"requests[{position}]", f"is not a valid RecommendRequest ({err})"
            ) from err
        queries.append(parse_recommend(single, config, f"requests[{position}]."))
    return queries


def parse_record(
    request: pb.RecordInteractionsRequest, config: ServeConfig
) -> tuple[str, list[str], list[str]]:
    """(user id, item ids, event ids: one per item, or none)."""
    user_id = check_id(request.user_id, "user_id", config)
    if not request.item_ids:
        raise InvalidArgument("item_ids", "must hold at least one item id")
    item_ids = check_ids(request.item_ids, "item_ids", config)
    event_ids: list[str] = []
    if request.event_ids:
        if len(request.event_ids) != len(request.item_ids):
            raise InvalidArgument(
                "event_ids",
                f"must hold one id per item ({len(request.item_ids)}), got "
                f"{len(request.event_ids)}",
            )
        event_ids = check_ids(request.event_ids, "event_ids", config)
    return user_id, item_ids, event_ids


def parse_history_request(
    request: pb.GetUserHistoryRequest, config: ServeConfig
) -> tuple[str, int]:
    user_id = check_id(request.user_id, "user_id", config)
    if request.limit < 0:
        raise InvalidArgument("limit", f"must be >= 0 (0 = all), got {request.limit}")
    return user_id, request.limit
