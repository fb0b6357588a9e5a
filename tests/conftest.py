"""Shared fixtures: fixed seeds, the shared benchmark data folder, small inline logs, tiny
synthetic datasets with models trained on them (for the evaluate, export and serving tests), and
the serving parts of ``tests/servers.py`` (for the serving and the command-line tests)."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from serving.store.embedded_redis import EmbeddedRedis
from tests.redis_cluster import LocalRedisCluster
from tests.servers import (
    SHARED_REDIS,
    Artifacts,
    ServerHandle,
    StartServer,
    delete_namespace,
    export_artifacts,
    redis_answers,
    server_config,
)

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(autouse=True, scope="session")
def _private_data_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Servers started without --redis-url persist their embedded Redis under $XDG_DATA_HOME:
    the tests' (and their subprocesses') go to a folder of the session, not the user's home."""
    previous = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("data-home"))
    yield
    if previous is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = previous


@pytest.fixture(autouse=True)
def _fixed_global_state() -> Iterator[None]:
    """Every test starts from the same seeds and leaves torch's global state as it found it."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def video_games_path() -> Path:
    """The SASRec authors' Video Games log; skips the test where ../shared/datasets is absent."""
    path = SHARED_DATASETS / "video_games.txt"
    if not path.is_file():
        pytest.skip(f"benchmark data not found at {path} (../shared/datasets is absent)")
    return path


@pytest.fixture
def small_log() -> pl.DataFrame:
    """Three users with timestamps; user 'c' has a time tie broken by input order."""
    return pl.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b", "b", "b", "c", "c", "c"],
            "item_id": ["x", "y", "z", "x", "y", "z", "w", "x", "w", "y"],
            "timestamp": [10, 20, 30, 40, 15, 25, 35, 50, 50, 60],
        }
    )


class TinyRuns:
    """Builds a small synthetic prepared dataset and trains a tiny SASRec on it in seconds."""

    TRAINING = {"hidden_size": 16, "batch_size": 64, "accelerator": "cpu", "devices": 1}
    """Settings every tiny model shares; each caller adds its own shape and epochs."""

    @staticmethod
    def prepared(
        folder: Path,
        n_users: int,
        n_items: int,
        n_events: int,
        seed: int,
        string_ids: bool = False,
    ) -> Path:
        """A synthetic log (items ``sku-<n>`` with ``string_ids``), users with >= 3 events."""
        from recsys.data import CleaningConfig, PrepareConfig, prepare_dataset, write_prepared
        from recsys.data.synthetic import SynthConfig, generate_log

        log = generate_log(
            SynthConfig(n_users=n_users, n_items=n_items, n_events=n_events, seed=seed)
        )
        if string_ids:
            log = log.with_columns(("sku-" + log["item_id"].cast(str)).alias("item_id"))
        config = PrepareConfig(cleaning=CleaningConfig(min_user_interactions=3))
        return write_prepared(prepare_dataset(log, config), folder)

    @classmethod
    def trained(cls, data: Path, run: Path, **config: Any) -> Path:
        """Train on ``data`` into ``run`` with ``TRAINING`` + ``config``; the best checkpoint."""
        from recsys.training import TrainConfig, train

        train(data, run, TrainConfig.build({**cls.TRAINING, **config}), progress=False)
        return run / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="session")
def tiny_runs() -> type[TinyRuns]:
    """``TinyRuns``: tiny synthetic datasets and models for tests that need a real checkpoint."""
    return TinyRuns


@pytest.fixture(scope="session")
def artifacts(tiny_runs: type[TinyRuns], tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    """Two exported artifacts of 1-epoch tiny models on a synthetic log with string item ids."""
    return export_artifacts(tiny_runs, tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    """A three-master Redis Cluster on loopback ports for the session (skips without the
    redis-server binary)."""
    try:
        cluster = LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    except FileNotFoundError as err:
        pytest.skip(f"no Redis Cluster: {err}")
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def single_redis_url() -> Iterator[str]:
    """127.0.0.1:6379 if a Redis answers there, else an embedded one for the session."""
    if redis_answers(SHARED_REDIS):
        yield SHARED_REDIS
        return
    embedded = EmbeddedRedis().start()
    try:
        yield embedded.url
    finally:
        embedded.close()


@pytest.fixture(scope="module", params=["redis", "redis-cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """Every test that uses Redis runs twice: on one Redis (``single_redis_url``) and on a
    three-master Redis Cluster (``redis_cluster``). A module marked ``single_redis`` (it tests
    what only a single connection does: the near cache, the pipelined client) runs on the first
    alone."""
    if request.param == "redis-cluster":
        if request.node.get_closest_marker("single_redis") is not None:
            pytest.skip("single-node Redis only (client tracking, one pipelined connection)")
        return str(request.getfixturevalue("redis_cluster").url)
    return str(request.getfixturevalue("single_redis_url"))


def _new_namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    """A key namespace of this test alone; its keys are deleted afterwards."""
    name = _new_namespace()
    yield name
    delete_namespace(redis_url, name)


@pytest.fixture
def start_server(artifacts: Artifacts, redis_url: str, namespace: str) -> Iterator[StartServer]:
    """``start_server(artifact=None, **config)`` -> a running server on a free port.

    Defaults: the first artifact, the session's Redis, this test's namespace, port 0.
    """
    started: list[ServerHandle] = []

    def start(artifact: Path | None = None, **overrides: Any) -> ServerHandle:
        config = server_config(**{"redis_url": redis_url, "namespace": namespace, **overrides})
        handle = ServerHandle(config, artifact or artifacts.first)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


@pytest.fixture
def server(start_server: StartServer) -> ServerHandle:
    """A server with the default settings on the first artifact."""
    return start_server()


@pytest.fixture(scope="module")
def shared_server(artifacts: Artifacts, redis_url: str) -> Iterator[ServerHandle]:
    """One server with the default settings for a whole test module, on a namespace of its own.

    Starting a server takes about half a second; tests that change nothing another test reads
    share this one. Each uses user ids and requests of its own (an answer another test cached
    would come back from the cache) and leaves the model, the health and the runtime as it
    found them.
    """
    name = _new_namespace()
    handle = ServerHandle(server_config(redis_url=redis_url, namespace=name), artifacts.first)
    yield handle
    handle.stop()
    delete_namespace(redis_url, name)
