"""``recsys load-features``: the latest histories of a prepared dataset into the store the server
reads, and errors that name the problem."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipelines.jobs.load_features import run_load_features
from recsys.data import load_prepared
from recsys.errors import ConfigError
from serving.errors import FeatureStoreUnavailable
from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.store.embedded_redis import free_port

if TYPE_CHECKING:
    from tests.servers import Artifacts, StartServer


def test_load_features_fills_the_store_the_server_reads(
    artifacts: Artifacts, redis_url: str, namespace: str, start_server: StartServer
) -> None:
    summary = run_load_features(
        artifacts.data, redis_url, namespace=namespace, max_history=5, batch_users=50
    )
    dataset = load_prepared(artifacts.data)
    assert summary["users"] == dataset.num_users
    events = dataset.interactions.filter(dataset.interactions["user_idx"] == 1)
    item_of = dict(
        zip(
            dataset.items.table["item_idx"].to_list(),
            dataset.items.table["item_id"].to_list(),
            strict=True,
        )
    )
    user_id = str(dataset.users.table.filter(dataset.users.table["user_idx"] == 1)["user_id"][0])
    newest = [str(item_of[index]) for index in events["item_idx"].to_list()[-5:]]

    server = start_server(max_history=5)
    stored = server.stub.GetUserHistory(pb.GetUserHistoryRequest(user_id=user_id), timeout=5)
    assert (list(stored.item_ids), stored.history_version) == (newest, 1)
    answer = server.stub.Recommend(pb.RecommendRequest(user_id=user_id, k=3), timeout=5)
    assert (answer.source, answer.history_length) == (pb.SOURCE_MODEL, 5)
    assert server.stub.Recommend(pb.RecommendRequest(user_id=user_id, k=3)).source == (
        pb.SOURCE_CACHE
    )

    run_load_features(artifacts.data, redis_url, namespace=namespace, max_history=5)
    again = server.stub.Recommend(pb.RecommendRequest(user_id=user_id, k=3), timeout=5)
    assert (again.source, again.history_version) == (pb.SOURCE_MODEL, 2)


def _closed() -> str:
    """The URL of a port where no Redis listens."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.mark.parametrize(
    ("load", "error", "message"),
    [
        (
            lambda data: run_load_features(data, "http://localhost:6379", progress=False),
            ConfigError,
            "--redis-url",
        ),
        (
            lambda data: run_load_features(data, "redis://127.0.0.1:1/0", namespace="a b"),
            ConfigError,
            "--namespace",
        ),
        (
            lambda data: run_load_features(data, _closed(), progress=False),
            FeatureStoreUnavailable,
            "Redis failed after 0 users",
        ),
        (
            lambda data: run_load_features(data.parent / "missing", _closed(), progress=False),
            Exception,
            "recsys prepare",
        ),
    ],
    ids=["redis-url", "namespace", "redis-down", "no-dataset"],
)
def test_load_features_errors_name_the_problem(
    artifacts: Artifacts,
    load: Callable[[Path], object],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        load(artifacts.data)
