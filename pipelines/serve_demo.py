"""The serving step of ``recsys demo``: a real server and real requests on the demo's artifact.

Starts the gRPC server in-process on a free port with an embedded Redis, loads the dataset's
latest histories into it (``recsys load-features``), then acts as a client over a real channel:
a known user, the same request again (answered from the cache), an explanation, new events
recorded for the user (the next answer reflects them), and a user the store has never seen
(popularity fallback). The server then shuts down gracefully.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

from pipelines.console import console
from pipelines.load_features import run_load_features
from recsys.data import load_prepared
from serving.client import explanation_table, response_table
from serving.config import ServeConfig
from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc
from serving.server import RecommenderApp


@dataclass(frozen=True)
class DemoAnswers:
    """What the demo's requests got back, in the order it sent them."""

    history: pb.GetUserHistoryResponse
    first: pb.RecommendResponse
    again: pb.RecommendResponse
    explained: pb.RecommendResponse
    recorded: pb.RecordInteractionsResponse
    after: pb.RecommendResponse
    cold: pb.RecommendResponse


def run_serving_demo(artifact: Path, data: Path) -> DemoAnswers:
    """Serve ``artifact``, load ``data``'s histories, send a few requests, print the answers and
    return them."""
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(_demo(artifact, data))


async def _demo(artifact: Path, data: Path) -> DemoAnswers:
    app = RecommenderApp(ServeConfig(port=0, grace_s=2.0), artifact)
    port = await app.start()
    try:
        console.print(
            f"server on 127.0.0.1:{port} (model {app.runtime.snapshot.model_version}); "
            f"embedded Redis at {app.redis_url}"
        )
        summary = await asyncio.to_thread(run_load_features, data, app.redis_url)
        console.print(f"loaded {summary['users']:,} user histories in {summary['seconds']} s")
        users = load_prepared(data).users.table
        user = str(users.get_column(users.columns[1])[0])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            answers = await _requests(pb_grpc.RecommenderStub(channel), user)
    finally:
        await app.stop()
    console.print("server stopped (health NOT_SERVING, in-flight calls drained, Redis closed)")
    return answers


async def _requests(stub: pb_grpc.RecommenderAsyncStub, user: str) -> DemoAnswers:
    history = await stub.GetUserHistory(pb.GetUserHistoryRequest(user_id=user, limit=5), timeout=5)
    console.print(f"user {user!r}: newest stored events {', '.join(history.item_ids)}")
    request = pb.RecommendRequest(user_id=user, k=5)
    first = await stub.Recommend(request, timeout=5)
    console.print(response_table(first, f"user {user}"))
    again = await stub.Recommend(request, timeout=5)
    console.print(response_table(again, f"user {user}, same request again"))

    explained = await stub.Recommend(
        pb.RecommendRequest(user_id=user, k=5, explain=True), timeout=5
    )
    console.print(
        f"user {user}, asked with explain=true: the history items whose attention drove the answer"
    )
    drivers = explanation_table(explained)
    if drivers is not None:
        console.print(drivers)

    new_events = [item.item_id for item in first.items[:2]]
    recorded = await stub.RecordInteractions(
        pb.RecordInteractionsRequest(user_id=user, item_ids=new_events), timeout=5
    )
    console.print(
        f"RecordInteractions {user!r} <- {', '.join(new_events)}: history version "
        f"{recorded.history_version}, {recorded.history_length} items stored"
    )
    after = await stub.Recommend(request, timeout=5)
    console.print(response_table(after, f"user {user} after the new events"))

    cold = await stub.Recommend(pb.RecommendRequest(user_id="someone-new", k=5), timeout=5)
    console.print(response_table(cold, "a user the store has never seen"))
    return DemoAnswers(history, first, again, explained, recorded, after, cold)
