"""The ``recsys.v1.Recommender`` servicer: request checks, then the engine or the feature store.

Handlers raise ``ServiceError`` subclasses and never set status codes themselves; the error
interceptor (``serving.interceptors``) turns those into statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Sequence
from typing import Any

import grpc

from serving.config import ServeConfig
from serving.engine import RecommendEngine
from serving.errors import DeadlineExceeded
from serving.metrics import ServerMetrics
from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc
from serving.validation import (
    BatchRequest,
    RecommendQuery,
    check_batch_size,
    check_id,
    parse_batch_part,
    parse_history_request,
    parse_recommend,
    parse_record,
)
from serving.wire import batch_answers

Context = grpc.aio.ServicerContext[Any, Any]


def _deadline(context: Context) -> float | None:
    """The caller's deadline on the event loop's clock (None: no deadline)."""
    remaining = context.time_remaining()
    if remaining is None:
        return None
    if remaining <= 0:
        raise DeadlineExceeded("the deadline passed before the request was read")
    return asyncio.get_running_loop().time() + remaining


class RecommenderService(pb_grpc.RecommenderServicer):
    def __init__(
        self, config: ServeConfig, engine: RecommendEngine, metrics: ServerMetrics | None = None
    ) -> None:
        self.config = config
        self.engine = engine
        self.metrics = metrics
        self._callers = itertools.count(1)
        self._singles_in_flight = 0
        self._no_singles = asyncio.Event()
        self._no_singles.set()

    async def Recommend(  # noqa: N802 - gRPC method name
        self, request: pb.RecommendRequest, context: Context
    ) -> pb.RecommendResponse:
        query = parse_recommend(request, self.config)
        self._singles_in_flight += 1
        self._no_singles.clear()
        try:
            answer = await self.engine.recommend(query, _deadline(context))
        finally:
            self._singles_in_flight -= 1
            if self._singles_in_flight == 0:
                self._no_singles.set()
        self._count([answer])
        return answer

    async def RecommendBatch(  # type: ignore[override]  # noqa: N802 - bytes in and out
        self, request: BatchRequest, context: Context
    ) -> bytes:
        # In pieces of --fair-share: each piece's Python work (checks, id lookups, building
        # answers with their explanations, serializing them) runs on the event loop, and other
        # callers' requests get their turn between pieces instead of after the whole batch. The
        # answer is the RecommendBatchResponse's bytes, joined from the pieces', and the request
        # arrives split into its requests' bytes, each decoded with its piece (serving.wire).
        # Every request is checked before any is answered, so a bad one costs no model work.
        # Each piece's checked requests are let go once answered: a maximum-size batch holds half
        # a million id strings, and freeing them all at its end held the loop for ~10 ms.
        share = self.config.fair_share
        check_batch_size(request, self.config)
        pending: list[list[RecommendQuery]] = []
        for start in range(0, len(request.requests), share):
            await self._make_way()
            pending.append(parse_batch_part(request, self.config, start, start + share))
        deadline = _deadline(context)
        caller = next(self._callers)  # the model runtime shares forwards fairly by caller
        pending.reverse()  # answered from the end of the list, in request order
        pieces: list[bytes] = []
        while pending:
            await self._make_way()
            answers = await asyncio.gather(
                *(self.engine.recommend(query, deadline, caller) for query in pending.pop())
            )
            self._count(answers)
            pieces.append(batch_answers(answers))
            del answers
        return b"".join(pieces)

    async def _make_way(self) -> None:
        """Before a batch's next piece: let the single Recommend calls in flight finish first,
        waiting at most ``batch_yield_ms``. A piece's Python work and its forward compete for
        the loop and the CPU with the singles' (on two cores, a piece beside a single doubled
        the single's forward from launch to result); a batch of 256 yields 2 x 64 times, so a
        steady stream of singles costs it at most 128 waits."""
        if self._singles_in_flight == 0 or self.config.batch_yield_ms <= 0:
            await asyncio.sleep(0)  # requests that arrived meanwhile start
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_singles.wait(), self.config.batch_yield_ms / 1000)

    def _count(self, answers: Sequence[pb.RecommendResponse]) -> None:
        if self.metrics is None:
            return
        for answer in answers:
            self.metrics.count_answer(answer.source, answer.fallback_reason, answer.degraded)

    async def RecordInteractions(  # noqa: N802
        self, request: pb.RecordInteractionsRequest, context: Context
    ) -> pb.RecordInteractionsResponse:
        user_id, item_ids, event_ids = parse_record(request, self.config)
        version, length, duplicates = await self.engine.store.append(user_id, item_ids, event_ids)
        _, unknown = self.engine.runtime.snapshot.to_indices(item_ids)
        return pb.RecordInteractionsResponse(
            history_version=version,
            history_length=length,
            unknown_item_ids=list(dict.fromkeys(unknown)),
            duplicate_events=duplicates,
        )

    async def GetUserHistory(  # noqa: N802
        self, request: pb.GetUserHistoryRequest, context: Context
    ) -> pb.GetUserHistoryResponse:
        user_id, limit = parse_history_request(request, self.config)
        items, version = await self.engine.store.history(user_id, limit)
        return pb.GetUserHistoryResponse(item_ids=items, history_version=version)

    async def DeleteUserData(  # noqa: N802
        self, request: pb.DeleteUserDataRequest, context: Context
    ) -> pb.DeleteUserDataResponse:
        user_id = check_id(request.user_id, "user_id", self.config)
        items, answers = await self.engine.store.delete_user(user_id)
        return pb.DeleteUserDataResponse(deleted_items=items, deleted_answers=answers)

    async def GetModelInfo(  # noqa: N802
        self, request: pb.GetModelInfoRequest, context: Context
    ) -> pb.ModelInfo:
        snapshot = self.engine.runtime.snapshot
        manifest = snapshot.artifact.manifest
        return pb.ModelInfo(
            model_version=snapshot.model_version,
            format_version=str(manifest.get("format_version", "")),
            max_len=snapshot.max_len,
            num_items=snapshot.num_items,
            manifest_json=json.dumps(manifest, sort_keys=True, default=str),
            artifact_path=str(snapshot.artifact.path),
            loaded_at=snapshot.loaded_at,
        )
