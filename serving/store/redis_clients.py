"""Clients of the configured Redis: the URL checked and redacted for logs, redis-py clients for
the slow paths (bulk loads, health probes, tests). The request hot path uses
``serving.store.pipelined_client`` instead (it says why), except on a Redis Cluster.

A Redis Cluster is named by ``redis+cluster://host:port`` (``rediss+cluster://`` with TLS): any
one node, from which redis-py's cluster client learns the others and which slots each holds,
and follows MOVED/ASK redirections when slots move. Every key of one user carries the user as a
hash tag (``serving.store.feature_store.FeatureKeys``), so one user's reads, scripts and
transactions stay on one node."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster

from recsys.errors import ConfigError


def redacted(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
"""A cluster URL's scheme -> the scheme of its seed node's URL."""

AsyncClient = aioredis.Redis | AsyncRedisCluster
SyncClient = redis.Redis | RedisCluster


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://``, ``rediss+cluster://``)."""
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def seed_url(url: str) -> str:
    """A cluster URL as the plain URL of its seed node (other URLs unchanged)."""
    parts = urlsplit(url)
    scheme = CLUSTER_SCHEMES.get(parts.scheme)
    if scheme is None:
        return url
    if parts.path not in ("", "/", "/0"):
        raise ConfigError(
            f"--redis-url {redacted(url)!r}: a Redis Cluster has only database 0, got "
            f"{parts.path!r}"
        )
    return urlunsplit((scheme, parts.netloc, "", parts.query, parts.fragment))


def async_client(url: str, timeout_s: float) -> AsyncClient:
    """An asyncio client for ``redis://``, ``rediss://`` (TLS), ``unix://`` or cluster URLs.

    Connections are made lazily, so a Redis that is down at start does not stop the server.
    Every call is bounded by ``timeout_s``.
    """
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "decode_responses": False,
    }
    try:
        if is_cluster_url(url):
            # One more try, at once, after a connection error (the slots may have moved: the
            # client re-reads the topology first); redis-py's default backs off three times,
            # and a request on a dead node's shard should degrade, not wait.
            retry = AsyncRetry(NoBackoff(), 1)
            return AsyncRedisCluster.from_url(seed_url(url), retry=retry, **options)
        return aioredis.Redis.from_url(url, health_check_interval=0, **options)
    except ValueError as err:
        raise ConfigError(
            f"--redis-url {redacted(url)!r} is not a usable Redis URL: {err}"
        ) from err


def sync_client(url: str, timeout_s: float = 5.0) -> SyncClient:
    """A blocking client (batch jobs such as load-features)."""
    options: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    try:
        if is_cluster_url(url):
            return RedisCluster.from_url(seed_url(url), **options)
        return redis.Redis.from_url(url, **options)
    except ValueError as err:
        raise ConfigError(
            f"--redis-url {redacted(url)!r} is not a usable Redis URL: {err}"
        ) from err
