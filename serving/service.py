"""The ``recsys.v1.Recommender`` servicer: request checks, then the engine or the feature store.

Handlers raise ``ServiceError`` subclasses and never set status codes themselves; the error
interceptor (``serving.interceptors``) turns those into statuses.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import grpc

from serving.config import ServeConfig
from serving.engine import RecommendEngine
from serving.errors import DeadlineExceeded
from serving.metrics import ServerMetrics
from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc
from serving.validation import (
    check_batch_size,
    check_id,
    parse_batch_part,
    parse_history_request,
    parse_recommend,
    parse_record,
)

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

    async def Recommend(  # noqa: N802 - gRPC method name
        self, request: pb.RecommendRequest, context: Context
    ) -> pb.RecommendResponse:
        query = parse_recommend(request, self.config)
        answer = await self.engine.recommend(query, _deadline(context))
        self._count([answer])
        return answer

    async def RecommendBatch(  # noqa: N802
        self, request: pb.RecommendBatchRequest, context: Context
    ) -> pb.RecommendBatchResponse:
        # In pieces of --fair-share: each piece's Python work (checks, id lookups, building
        # answers with their explanations) runs on the event loop, and other callers' requests
        # get their turn between pieces instead of after the whole batch. Every request is
        # checked before any is answered, so that a bad one costs no model work.
        share = self.config.fair_share
        check_batch_size(request, self.config)
        queries = []
        for start in range(0, len(request.requests), share):
            queries += parse_batch_part(request, self.config, start, start + share)
            await asyncio.sleep(0)
        deadline = _deadline(context)
        caller = next(self._callers)  # the model runtime shares forwards fairly by caller
        answers: list[pb.RecommendResponse] = []
        for start in range(0, len(queries), share):
            answers += await asyncio.gather(
                *(
                    self.engine.recommend(query, deadline, caller)
                    for query in queries[start : start + share]
                )
            )
            await asyncio.sleep(0)  # let requests that arrived meanwhile start
        self._count(answers)
        return pb.RecommendBatchResponse(responses=answers)

    def _count(self, answers: list[pb.RecommendResponse]) -> None:
        if self.metrics is None:
            return
        for answer in answers:
            reason = ""
            if answer.source == pb.SOURCE_FALLBACK:
                reason = pb.FallbackReason.Name(answer.fallback_reason)
            self.metrics.answers.labels(pb.Source.Name(answer.source), reason).inc()
            if answer.degraded:
                self.metrics.degraded.inc()

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
