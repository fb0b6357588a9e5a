"""``ServeConfig``: every setting of the server, typed and checked; errors name the flag.

Each field is a flag of ``recsys serve`` (``max_k`` -> ``--max-k``; ``pipelines.options`` builds
them) and a key of a ``--config`` YAML file; its docstring is the flag's help.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final, Literal

from pydantic import model_validator

from recsys.config import Config, flag
from recsys.errors import ConfigError

_NAMESPACE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
DEFAULT_PORT: Final = 50051


class ServeConfig(Config):
    """Limits, batching, caching and feature-store settings of one server process."""

    host: str = "127.0.0.1"
    """Address to listen on (0.0.0.0: every interface)."""
    port: int = DEFAULT_PORT
    """0 picks a free port (tests)."""
    metrics_port: int | None = None
    """Serve Prometheus metrics over HTTP on this port (on --host, path /metrics); 0 picks a
    free one; unset: no metrics endpoint."""
    tls_cert: str | None = None
    """PEM certificate chain: the port speaks TLS only (with --tls-key)."""
    tls_key: str | None = None
    """PEM private key of --tls-cert."""
    tls_client_ca: str | None = None
    """With TLS: clients must present a certificate signed by this PEM CA (mutual TLS)."""
    auth_token_file: str | None = None
    """A file of bearer tokens, one per line: every call must send metadata
    'authorization: Bearer <token>' with one of them (the health service stays open)."""
    verify_key: str | None = None
    """An Ed25519 public key (PEM): serve only artifacts signed with its private key
    (recsys export --sign-key), at start and on every reload."""
    redis_url: str | None = None
    """``redis://``, ``rediss://`` (TLS), ``unix://``, or a Redis Cluster through any one of its
    nodes, ``redis+cluster://host:port`` (``rediss+cluster://`` with TLS); None starts an
    embedded Redis."""
    redis_dir: str = "auto"
    """Embedded Redis only (no --redis-url): the folder of its append-only file, reloaded when
    the server starts again; auto: $XDG_DATA_HOME/recsys/redis (~/.local/share/recsys/redis);
    none: nothing persisted."""
    redis_fsync: Literal["always", "everysec"] = "everysec"
    """Embedded Redis with a --redis-dir: always: a write is on disk before it is acknowledged
    (nothing acknowledged is lost, slower writes); everysec: a crash may lose about the last
    second of acknowledged writes."""
    dedup_window_s: float = 86_400.0
    """How long RecordInteractions remembers a user's event ids (and at most the newest 10,000
    per user): a retry within it never appends the same event twice."""
    namespace: str = "recsys"
    """Prefix of every Redis key, so several deployments (or tests) can share one Redis."""

    max_k: int = 100
    """Largest k a request may ask for."""
    max_history: int = 200
    """Items kept per user in the feature store (the newest)."""
    max_request_items: int = 1000
    """Longest history / exclude / allow / item list one request may carry."""
    max_batch_requests: int = 256
    """Most requests in one RecommendBatch call."""
    max_id_length: int = 256
    """Longest user or item id (characters)."""

    max_batch_size: int = 64
    """Most requests in one model forward (micro-batch)."""
    fair_share: int = 4
    """Most requests of one RecommendBatch call in one forward: a large batch is cut into
    pieces that other callers' requests ride along with, instead of waiting behind all of it."""
    batch_yield_ms: float = 10.0
    """How long a RecommendBatch piece waits for single Recommend calls in flight to finish
    before it starts anyway: singles go first, and a batch is never held longer than this per
    piece (0: pieces never wait)."""
    max_wait_ms: float = 1.0
    """How long a micro-batch of a busy server (``busy_in_flight``) waits for more requests before
    it runs. Bigger batches cost less CPU per request (the model's fixed cost per forward, fewer
    event-loop wake-ups), and a busy server's requests queue for longer than this anyway. 0: a
    batch takes whatever arrived while the previous one ran."""
    busy_in_flight: int = 8
    """Requests in flight (received, not answered) from which the server counts as busy and a
    batch waits ``max_wait_ms``; below it a batch never waits, so light load adds no latency.
    1: every batch waits."""
    read_hold_ms: float = 50.0
    """While the model runs a batch, Redis reads of the requests that arrive meanwhile wait and
    leave together when it ends (or after this long at most, a backstop for a slow forward): one
    write and one reply read instead of one each (``serving.store.pipelined_client``). They
    cannot run before the next batch anyway; what it costs is one Redis round trip before that
    batch. 0: every read leaves at once."""
    max_queue: int = 4096
    """Requests waiting for the model beyond which new ones get UNAVAILABLE (overload)."""
    torch_threads: int = 1
    """Intra-op threads of the model forward (the event loop needs a core of its own)."""

    cache_ttl_s: float = 300.0
    """Lifetime of a cached answer; 0 disables the result cache."""
    near_cache_size: int = 100_000
    """Versions and answers kept in process (each), invalidated by Redis's client-side-caching
    pushes (``serving.store.near_cache``); 0 asks Redis every time."""
    near_cache_mb: float = 64.0
    """Memory budget of the in-process cache (versions and answers together, by their size):
    the least recently used entries go first when it is full."""
    redis_timeout_s: float = 0.5
    """Timeout of every Redis call."""
    redis_retry_interval_s: float = 1.0
    """While Redis is down: how often to probe it (requests skip it until a probe succeeds)."""

    explain_top: int = 10
    """History items listed per recommended item with ``explain``."""
    grace_s: float = 10.0
    """On SIGTERM: how long in-flight calls may take to finish."""
    watch: bool = False
    """Reload the artifact when its manifest changes."""
    watch_interval_s: float = 2.0
    """How often ``watch`` looks at the manifest."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Least severe log records written."""
    log_format: Literal["text", "json"] = "text"
    """text: human-readable lines; json: one JSON object per line (time, level, logger, event,
    model_version, exception)."""

    @model_validator(mode="after")
    def _check(self) -> ServeConfig:
        at_least_one = (
            "max_k",
            "max_history",
            "max_request_items",
            "max_batch_requests",
            "max_id_length",
            "max_batch_size",
            "fair_share",
            "busy_in_flight",
            "max_queue",
            "torch_threads",
            "explain_top",
        )
        for name in at_least_one:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{flag(name)} must be an integer >= 1, got {value!r}")
        if (
            not isinstance(self.near_cache_size, int)
            or isinstance(self.near_cache_size, bool)
            or self.near_cache_size < 0
        ):
            raise ConfigError(
                f"--near-cache-size must be an integer >= 0, got {self.near_cache_size!r}"
            )
        for name in ("max_wait_ms", "read_hold_ms", "cache_ttl_s", "grace_s", "batch_yield_ms"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{flag(name)} must be >= 0, got {getattr(self, name)!r}")
        if self.near_cache_mb <= 0:
            raise ConfigError(f"--near-cache-mb must be > 0, got {self.near_cache_mb!r}")
        for name in (
            "redis_timeout_s",
            "redis_retry_interval_s",
            "watch_interval_s",
            "dedup_window_s",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{flag(name)} must be > 0, got {getattr(self, name)!r}")
        if self.read_hold_ms / 1000.0 >= self.redis_timeout_s / 2:
            raise ConfigError(
                f"--read-hold-ms must be below half of --redis-timeout-s "
                f"({self.redis_timeout_s * 500:g} ms), got {self.read_hold_ms!r}: a held read "
                "counts towards its timeout"
            )
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be in 0..65535, got {self.port}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"--metrics-port must be in 0..65535, got {self.metrics_port}")
        if not self.host:
            raise ConfigError("--host must not be empty")
        if not _NAMESPACE.match(self.namespace):
            raise ConfigError(
                f"--namespace must be 1-64 characters of letters, digits and _.:-, "
                f"got {self.namespace!r}"
            )
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
        ):
            raise ConfigError(
                f"--redis-url must start with redis://, rediss://, unix:// or (a Redis "
                f"Cluster) redis+cluster:// or rediss+cluster://, got {self.redis_url!r}"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together: give both or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ConfigError("--tls-client-ca needs TLS: give --tls-cert and --tls-key too")
        if not self.redis_dir:
            raise ConfigError("--redis-dir must not be empty (auto, none or a folder)")
        return self

    def embedded_redis_dir(self) -> Path | None:
        """The embedded Redis's data folder, None for no persistence."""
        if self.redis_dir == "none":
            return None
        if self.redis_dir == "auto":
            base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
            return Path(base) / "recsys" / "redis"
        return Path(self.redis_dir).expanduser()
