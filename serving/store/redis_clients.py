"""Clients of the configured Redis: the URL checked and redacted for logs, redis-py clients for
the slow paths (bulk loads, health probes, tests). The request hot path uses
``serving.store.pipelined_client`` instead (it says why)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis

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


def async_client(url: str, timeout_s: float) -> aioredis.Redis:
    """An asyncio client for ``redis://``, ``rediss://`` (TLS) or ``unix://`` URLs.

    Connections are made lazily, so a Redis that is down at start does not stop the server.
    Every call is bounded by ``timeout_s``.
    """
    try:
        return aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=0,
            decode_responses=False,
        )
    except ValueError as err:
        raise ConfigError(
            f"--redis-url {redacted(url)!r} is not a usable Redis URL: {err}"
        ) from err


def sync_client(url: str, timeout_s: float = 5.0) -> redis.Redis:
    """A blocking client (batch jobs such as load-features)."""
    try:
        return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    except ValueError as err:
        raise ConfigError(
            f"--redis-url {redacted(url)!r} is not a usable Redis URL: {err}"
        ) from err
