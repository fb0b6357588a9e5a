"""Raw log -> prepared dataset: read, clean, index, order, split, summarise.

``prepare_dataset`` is the one function the ``recsys prepare`` job, the benchmarks and the tests
call; it keeps everything in polars and never touches the output folder (see ``write_prepared``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from recsys.data import columns as C
from recsys.data.cleaning import CleaningConfig, clean_interactions
from recsys.data.prepared import FORMAT_VERSION, PreparedDataset
from recsys.data.readers import ColumnMapping, LogFormat, read_interactions
from recsys.data.splits import SplitConfig, assign_split, order_chronologically
from recsys.data.vocab import index_interactions
from recsys.io import sha256_file


@dataclass(frozen=True)
class PrepareConfig:
    """Everything that decides what a prepared dataset contains."""

    log_format: LogFormat = "auto"
    mapping: ColumnMapping = field(default_factory=ColumnMapping)
    cleaning: CleaningConfig = field(default_factory=CleaningConfig)
    split: SplitConfig = field(default_factory=SplitConfig)


def prepare_dataset(
    source: str | Path | pl.DataFrame | pd.DataFrame,
    config: PrepareConfig | None = None,
    on_step: Callable[[str], None] | None = None,
) -> PreparedDataset:
    """Turn a log file or an in-memory frame into a ``PreparedDataset``.

    ``on_step`` is called with the name of each step as it starts (for progress display).
    """
    config = config or PrepareConfig()
    step = on_step or (lambda _name: None)
    step("reading")
    raw = read_interactions(source, config.log_format, config.mapping)
    step("cleaning")
    cleaned, report = clean_interactions(raw, config.cleaning)
    step("indexing")
    indexed, users, items = index_interactions(cleaned)
    step("ordering and splitting")
    ordered = order_chronologically(indexed)
    split_frame, split_description = assign_split(ordered, config.split)
    step("summarising")
    interactions = split_frame.select(
        C.USER_IDX,
        C.ITEM_IDX,
        C.TIMESTAMP,
        C.POSITION,
        C.SPLIT,
        *([C.RATING] if C.RATING in split_frame.columns else []),
    )
    item_table = items.table.join(_item_counts(interactions), on=C.ITEM_IDX, how="left")
    items = type(items)(
        item_table.with_columns(pl.col(C.COUNT, "train_count").fill_null(0)),
        items.index_col,
        items.id_col,
    )
    stats = {
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(),
        "num_users": users.size,
        "num_items": items.size,
        "num_interactions": interactions.height,
        "input": _describe_input(source, config),
        "filters": config.cleaning.as_dict(),
        "cleaning": report.as_dict(),
        "split": split_description,
        "splits": _split_counts(interactions),
        "sequence_length": _sequence_length_stats(interactions),
        "time_range": _time_range(interactions),
    }
    return PreparedDataset(interactions=interactions, users=users, items=items, stats=stats)


def fingerprint(source: str | Path | pl.DataFrame | pd.DataFrame) -> str:
    """SHA-256 of the input file's bytes, or of an in-memory frame's row hashes."""
    if isinstance(source, str | Path):
        return "sha256:" + sha256_file(Path(source))
    frame = pl.from_pandas(source) if isinstance(source, pd.DataFrame) else source
    digest = hashlib.sha256(",".join(frame.columns).encode())
    digest.update(frame.hash_rows(seed=0).to_numpy().tobytes())
    return "sha256-rows:" + digest.hexdigest()


def _describe_input(
    source: str | Path | pl.DataFrame | pd.DataFrame, config: PrepareConfig
) -> dict[str, Any]:
    kind = "file" if isinstance(source, str | Path) else type(source).__module__.split(".")[0]
    return {
        "source": str(Path(source).resolve()) if isinstance(source, str | Path) else kind,
        "format": config.log_format,
        "mapping": asdict(config.mapping),
        "fingerprint": fingerprint(source),
    }


def _item_counts(interactions: pl.DataFrame) -> pl.DataFrame:
    return interactions.group_by(C.ITEM_IDX).agg(
        pl.len().cast(pl.Int64).alias(C.COUNT),
        (pl.col(C.SPLIT) == C.TRAIN).sum().cast(pl.Int64).alias("train_count"),
    )


def _split_counts(interactions: pl.DataFrame) -> dict[str, dict[str, int]]:
    counts = interactions.group_by(C.SPLIT).agg(
        pl.len().alias("interactions"), pl.col(C.USER_IDX).n_unique().alias("users")
    )
    by_split = {row[C.SPLIT]: row for row in counts.iter_rows(named=True)}
    return {
        name: {
            "interactions": int(by_split.get(name, {}).get("interactions", 0)),
            "users": int(by_split.get(name, {}).get("users", 0)),
        }
        for name in C.SPLIT_NAMES
    }


def _sequence_length_stats(interactions: pl.DataFrame) -> dict[str, float]:
    lengths = interactions.group_by(C.USER_IDX).len().get_column("len").to_numpy()
    return {
        "mean": round(float(lengths.mean()), 3),
        "median": float(np.median(lengths)),
        "p95": float(np.quantile(lengths, 0.95)),
        "max": int(lengths.max()),
    }


def _time_range(interactions: pl.DataFrame) -> dict[str, str | None]:
    times = interactions.get_column(C.TIMESTAMP)
    if times.null_count() == times.len():
        return {"first": None, "last": None}
    return {"first": str(times.min()), "last": str(times.max())}
