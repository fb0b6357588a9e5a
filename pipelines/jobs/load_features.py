"""``recsys load-features``: the latest user histories of a prepared dataset -> the online store.

Every user's newest ``--max-history`` events (all splits, oldest first, external ids as strings)
replace that user's stored history in Redis, in pipelined transactions of ``--batch-users`` users,
with progress. Use the server's ``--namespace`` and ``--max-history`` so that both agree.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from pipelines.console import console
from pipelines.options import Option, config_command
from recsys.config import Config
from recsys.data import columns as C
from recsys.data import load_prepared
from recsys.errors import ConfigError
from serving.config import ServeConfig
from serving.store.bulk_load import load_histories
from serving.store.feature_store import FeatureKeys
from serving.store.redis_clients import redacted, sync_client

_DEFAULTS = ServeConfig()


def latest_histories(data: Path, max_history: int) -> tuple[int, Iterator[tuple[str, list[str]]]]:
    """(number of users, an iterator of (user_id, newest ``max_history`` item ids oldest first))."""
    dataset = load_prepared(data)
    items = dataset.items.table.select(
        pl.col(C.ITEM_IDX), pl.col(C.ITEM_ID).cast(pl.String).alias("item")
    )
    users = dataset.users.table.select(
        pl.col(C.USER_IDX), pl.col(C.USER_ID).cast(pl.String).alias("user")
    )
    histories = (
        dataset.interactions.select(C.USER_IDX, C.ITEM_IDX)  # sorted by user, then position
        .join(items, on=C.ITEM_IDX, how="left", maintain_order="left")
        .group_by(C.USER_IDX, maintain_order=True)
        .agg(pl.col("item").tail(max_history))
        .join(users, on=C.USER_IDX, how="left", maintain_order="left")
    )

    def rows() -> Iterator[tuple[str, list[str]]]:
        for chunk in histories.iter_slices(10_000):
            yield from zip(
                chunk.get_column("user").to_list(), chunk.get_column("item").to_list(), strict=True
            )

    return histories.height, rows()


def run_load_features(
    data: Path,
    redis_url: str,
    namespace: str = _DEFAULTS.namespace,
    max_history: int = _DEFAULTS.max_history,
    batch_users: int = 1000,
    progress: bool = True,
) -> dict[str, Any]:
    """Load the histories; returns ``{"users", "items", "seconds", "redis_url"}``."""
    ServeConfig(redis_url=redis_url, namespace=namespace, max_history=max_history)  # checks
    if batch_users < 1:
        raise ConfigError(f"--batch-users must be >= 1, got {batch_users}")
    started = time.perf_counter()
    total, rows = latest_histories(data, max_history)
    client = sync_client(redis_url)
    try:
        with Progress(
            TextColumn("loading histories"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} users"),
            TimeRemainingColumn(),
            console=console,
            disable=not progress,
        ) as bar:
            task = bar.add_task("load", total=total)
            users, item_count = load_histories(
                client,
                FeatureKeys(namespace),
                rows,
                batch_users,
                on_batch=lambda done, _: bar.advance(task, done),
            )
    finally:
        client.close()
    return {
        "users": users,
        "items": item_count,
        "seconds": round(time.perf_counter() - started, 3),
        "redis_url": redacted(redis_url),
    }


class LoadFeaturesSettings(Config):
    """Where ``recsys load-features`` writes the histories, and how many events per user."""

    redis_url: str
    """Redis to load into: redis://, rediss:// (TLS) or unix://."""
    namespace: str = _DEFAULTS.namespace
    """Key namespace (the server's --namespace)."""
    max_history: int = _DEFAULTS.max_history
    """Newest events kept per user (the server's --max-history)."""
    batch_users: int = 1000
    """Users per pipelined transaction (``run_load_features`` checks it, for every caller)."""


def _load_features(settings: LoadFeaturesSettings, data: Path) -> None:
    summary = run_load_features(
        data, settings.redis_url, settings.namespace, settings.max_history, settings.batch_users
    )
    console.print(
        f"loaded {summary['users']:,} user histories ({summary['items']:,} items) into "
        f"{summary['redis_url']} namespace {settings.namespace!r} in {summary['seconds']} s"
    )


load_features = config_command(
    LoadFeaturesSettings,
    _load_features,
    [
        Option(
            "data",
            Annotated[Path, typer.Option(help="Prepared dataset folder (from `recsys prepare`).")],
        )
    ],
    doc="Load every user's latest history from a prepared dataset into the Redis feature store.",
)
