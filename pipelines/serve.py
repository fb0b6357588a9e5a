"""``recsys serve``: the gRPC recommendation server on an exported artifact."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from serving.config import DEFAULT_PORT, ServeConfig
from serving.server import serve

_D = ServeConfig()


def serve_command(
    artifact: Annotated[Path, typer.Option(help="Artifact folder (from `recsys export`).")],
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")
    ] = _D.host,
    port: Annotated[int, typer.Option(help="Port (0: any free one).")] = DEFAULT_PORT,
    redis_url: Annotated[
        str | None,
        typer.Option(help="redis://, rediss:// (TLS) or unix:// URL; none: an embedded Redis."),
    ] = None,
    namespace: Annotated[str, typer.Option(help="Prefix of every Redis key.")] = _D.namespace,
    max_k: Annotated[int, typer.Option(help="Largest k a request may ask for.")] = _D.max_k,
    max_history: Annotated[
        int, typer.Option(help="Items kept per user in Redis.")
    ] = _D.max_history,
    max_request_items: Annotated[
        int, typer.Option(help="Longest id list one request may carry.")
    ] = _D.max_request_items,
    max_batch_requests: Annotated[
        int, typer.Option(help="Most requests in one RecommendBatch.")
    ] = _D.max_batch_requests,
    max_batch_size: Annotated[
        int, typer.Option(help="Most requests in one model forward.")
    ] = _D.max_batch_size,
    max_wait_ms: Annotated[
        float,
        typer.Option(
            help="How long a micro-batch of a busy server waits for more requests (0: never)."
        ),
    ] = _D.max_wait_ms,
    busy_in_flight: Annotated[
        int,
        typer.Option(
            help="Requests in flight from which the server is busy and batches wait "
            "--max-wait-ms (1: always)."
        ),
    ] = _D.busy_in_flight,
    read_hold_ms: Annotated[
        float,
        typer.Option(
            help="While the model runs, Redis reads of new requests wait at most this long to "
            "leave together when it ends (0: each read at once)."
        ),
    ] = _D.read_hold_ms,
    cache_ttl_s: Annotated[
        float, typer.Option(help="Lifetime of a cached answer in seconds (0: no cache).")
    ] = _D.cache_ttl_s,
    near_cache_size: Annotated[
        int,
        typer.Option(
            help="Versions and answers kept in process, invalidated by Redis (0: ask Redis "
            "every time)."
        ),
    ] = _D.near_cache_size,
    redis_timeout_s: Annotated[
        float, typer.Option(help="Timeout of every Redis call.")
    ] = _D.redis_timeout_s,
    torch_threads: Annotated[
        int, typer.Option(help="Threads of the model forward.")
    ] = _D.torch_threads,
    grace_s: Annotated[
        float, typer.Option(help="On SIGTERM, how long in-flight calls may take to finish.")
    ] = _D.grace_s,
    watch: Annotated[
        bool, typer.Option(help="Reload the artifact when its manifest changes.")
    ] = _D.watch,
    watch_interval_s: Annotated[
        float, typer.Option(help="How often --watch looks.")
    ] = _D.watch_interval_s,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve recommendations over gRPC (health + reflection included) until SIGTERM/SIGINT.

    SIGHUP reloads the artifact; a new artifact is verified first and a bad one is refused while
    the current model keeps serving.
    """
    config = ServeConfig(
        host=host,
        port=port,
        redis_url=redis_url,
        namespace=namespace,
        max_k=max_k,
        max_history=max_history,
        max_request_items=max_request_items,
        max_batch_requests=max_batch_requests,
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        busy_in_flight=busy_in_flight,
        read_hold_ms=read_hold_ms,
        cache_ttl_s=cache_ttl_s,
        near_cache_size=near_cache_size,
        redis_timeout_s=redis_timeout_s,
        torch_threads=torch_threads,
        grace_s=grace_s,
        watch=watch,
        watch_interval_s=watch_interval_s,
    )
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        from recsys.errors import ConfigError

        raise ConfigError(f"--log-level must be debug, info, warning or error, got {log_level!r}")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(config, artifact))
