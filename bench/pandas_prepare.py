"""``recsys.data.prepare_dataset`` + ``write_prepared``, step for step, in plain pandas.

The reference the data-preparation benchmark measures the polars path against: idiomatic,
vectorised pandas as a competent engineer would write it without polars: ``read_parquet``,
``dropna``, ``drop_duplicates``, ``groupby(...).transform("size")`` repeated to a fixpoint for the
k-core, ``factorize(sort=True)`` for the vocabularies, one ``sort_values`` and
``groupby.cumcount`` for the order, ``np.select`` for the leave-one-out labels and ``to_parquet``
for the folder. No Python loop touches rows.

It covers what the benchmark feeds it (a Parquet log with ``user_id``, ``item_id`` and a numeric
epoch ``timestamp``; the null, duplicate and k-core filters; the leave-one-out split) and writes the
same folder layout as ``recsys.data.write_prepared``, so the two outputs can be compared file by
file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from recsys.data import columns as C
from recsys.data.prepared import (
    FORMAT_VERSION,
    INTERACTIONS_FILE,
    ITEMS_FILE,
    STATS_FILE,
    USERS_FILE,
)
from recsys.errors import ConfigError, DataError
from recsys.io import atomic_directory, sha256_file, write_json

__all__ = ["PandasPrepareConfig", "PandasPrepared", "prepare_pandas", "write_prepared_pandas"]

EPOCH_MS_THRESHOLD: Final = 100_000_000_000
"""Epoch values above this are milliseconds (the rule ``recsys.data.readers`` applies)."""
LOO_MIN_EVENTS: Final = 3
"""Users with fewer events keep them all in training (as ``recsys.data.splits``)."""
TRAIN_COUNT: Final = "train_count"
PARQUET_COMPRESSION: Final = "zstd"
"""polars' ``write_parquet`` default, so both paths write comparable files."""


@dataclass(frozen=True)
class PandasPrepareConfig:
    """The filters of ``recsys.data.CleaningConfig`` that the benchmark uses."""

    drop_duplicates: bool = False
    min_user_interactions: int = 1
    min_item_interactions: int = 1

    def __post_init__(self) -> None:
        for name in ("min_user_interactions", "min_item_interactions"):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")


@dataclass(frozen=True)
class PandasPrepared:
    """The pandas twin of ``recsys.data.PreparedDataset``: three tables and the stats."""

    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    stats: dict[str, Any]


def prepare_pandas(
    path: Path,
    config: PandasPrepareConfig,
    on_step: Callable[[str], None] | None = None,
) -> PandasPrepared:
    """Read, clean, index, order, split and summarise a Parquet log, like ``prepare_dataset``.

    ``on_step`` is called with the same step names as ``prepare_dataset`` uses.
    """
    step = on_step or (lambda _name: None)
    step("reading")
    frame = read_log(path)
    step("cleaning")
    frame, report = clean(frame, config)
    step("indexing")
    frame, users, items = index(frame)
    step("ordering and splitting")
    interactions = order_and_split(frame)
    del frame
    step("summarising")
    items = items.merge(item_counts(interactions), on=C.ITEM_IDX, how="left")
    items[[C.COUNT, TRAIN_COUNT]] = items[[C.COUNT, TRAIN_COUNT]].fillna(0).astype(np.int64)
    stats = {
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(),
        "num_users": len(users),
        "num_items": len(items),
        "num_interactions": len(interactions),
        "input": {
            "source": str(Path(path).resolve()),
            "format": "parquet",
            "fingerprint": "sha256:" + sha256_file(Path(path)),
        },
        "filters": asdict(config),
        "cleaning": report,
        "split": {
            "strategy": "leave-one-out",
            "rule": "per user: last event test, second-to-last validation (users with >= 3 events)",
        },
        "splits": split_counts(interactions),
        "sequence_length": sequence_length_stats(interactions),
        "time_range": {
            "first": str(interactions[C.TIMESTAMP].min()),
            "last": str(interactions[C.TIMESTAMP].max()),
        },
    }
    return PandasPrepared(interactions=interactions, users=users, items=items, stats=stats)


def read_log(path: Path) -> pd.DataFrame:
    """The canonical frame: ids, ``Datetime[ms, UTC]`` times and the input row number."""
    frame = pd.read_parquet(path, columns=[C.USER_ID, C.ITEM_ID, C.TIMESTAMP])
    if not pd.api.types.is_numeric_dtype(frame[C.TIMESTAMP]):
        raise DataError(f"{path}: the pandas reference reads only numeric epoch timestamps")
    unit: Literal["s", "ms"] = "ms" if frame[C.TIMESTAMP].abs().max() > EPOCH_MS_THRESHOLD else "s"
    frame[C.TIMESTAMP] = pd.to_datetime(frame[C.TIMESTAMP], unit=unit, utc=True).astype(
        "datetime64[ms, UTC]"
    )
    frame[C.EVENT_ORDER] = np.arange(len(frame), dtype=np.int64)
    return frame


def clean(frame: pd.DataFrame, config: PandasPrepareConfig) -> tuple[pd.DataFrame, dict[str, int]]:
    """Nulls, duplicates, k-core; counts what each step removed (``CleaningReport``'s keys)."""
    report = dict.fromkeys(
        (
            "rows_read",
            "null_ids_dropped",
            "null_timestamps_dropped",
            "duplicates_dropped",
            "below_min_rating_dropped",
            "k_core_dropped",
            "k_core_iterations",
            "rows_kept",
        ),
        0,
    )
    report["rows_read"] = len(frame)
    kept = frame.dropna(subset=[C.USER_ID, C.ITEM_ID])
    report["null_ids_dropped"] = len(frame) - len(kept)
    if kept[C.TIMESTAMP].notna().any():
        before = len(kept)
        kept = kept.dropna(subset=[C.TIMESTAMP])
        report["null_timestamps_dropped"] = before - len(kept)
    if config.drop_duplicates:
        subset = [c for c in (C.USER_ID, C.ITEM_ID, C.TIMESTAMP, C.RATING) if c in kept.columns]
        before = len(kept)
        kept = kept.drop_duplicates(subset=subset, keep="first")
        report["duplicates_dropped"] = before - len(kept)
    before = len(kept)
    kept, report["k_core_iterations"] = k_core(
        kept, config.min_user_interactions, config.min_item_interactions
    )
    report["k_core_dropped"] = before - len(kept)
    report["rows_kept"] = len(kept)
    if report["rows_kept"] == 0:
        raise DataError("no interactions left after cleaning: relax the filters")
    return kept, report


def k_core(frame: pd.DataFrame, min_user: int, min_item: int) -> tuple[pd.DataFrame, int]:
    """Drop users and items below their thresholds until nothing changes; return the passes.

    >>> log = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": [1, 2, 1, 2, 1]})
    >>> len(k_core(log, 2, 2)[0])
    4
    """
    if min_user <= 1 and min_item <= 1:
        return frame, 0
    passes = 0
    while True:
        user_count = frame.groupby(C.USER_ID, sort=False)[C.USER_ID].transform("size")
        item_count = frame.groupby(C.ITEM_ID, sort=False)[C.ITEM_ID].transform("size")
        keep = (user_count >= min_user) & (item_count >= min_item)
        passes += 1
        if keep.all():
            return frame, passes
        frame = frame[keep]


def index(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Add ``user_idx``/``item_idx`` (sorted ids -> 1..n); return the frame and both tables."""
    indices: dict[str, npt.NDArray[np.int32]] = {}
    tables = []
    for id_col, index_col in ((C.USER_ID, C.USER_IDX), (C.ITEM_ID, C.ITEM_IDX)):
        codes, uniques = pd.factorize(frame[id_col], sort=True)
        indices[index_col] = (codes + 1).astype(np.int32)
        tables.append(
            pd.DataFrame(
                {
                    index_col: np.arange(1, len(uniques) + 1, dtype=np.int32),
                    id_col: uniques.to_numpy(),
                }
            )
        )
    return frame.assign(**indices), tables[0], tables[1]


def order_and_split(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort by user, time, input order; number each user's events; label leave-one-out splits."""
    ordered = frame.sort_values([C.USER_IDX, C.TIMESTAMP, C.EVENT_ORDER], ignore_index=True)
    by_user = ordered.groupby(C.USER_IDX, sort=False)
    position = by_user.cumcount().to_numpy()
    length = by_user[C.USER_IDX].transform("size").to_numpy()
    long_enough = length >= LOO_MIN_EVENTS
    codes = np.select(
        [long_enough & (position == length - 1), long_enough & (position == length - 2)],
        [C.SPLIT_NAMES.index(C.TEST), C.SPLIT_NAMES.index(C.VALIDATION)],
        default=C.SPLIT_NAMES.index(C.TRAIN),
    ).astype(np.int8)
    return pd.DataFrame(
        {
            C.USER_IDX: ordered[C.USER_IDX],
            C.ITEM_IDX: ordered[C.ITEM_IDX],
            C.TIMESTAMP: ordered[C.TIMESTAMP],
            C.POSITION: position.astype(np.int32),
            C.SPLIT: pd.Categorical.from_codes(codes, categories=pd.Index(C.SPLIT_NAMES)),
        }
    )


def item_counts(interactions: pd.DataFrame) -> pd.DataFrame:
    """Per item: all interactions and training interactions."""
    is_train = interactions[C.SPLIT] == C.TRAIN
    by_item = is_train.groupby(interactions[C.ITEM_IDX])
    return pd.DataFrame({C.COUNT: by_item.size(), TRAIN_COUNT: by_item.sum()}).reset_index()


def split_counts(interactions: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Interactions and distinct users per split, every split present."""
    by_split = interactions.groupby(C.SPLIT, observed=False)[C.USER_IDX]
    counts = by_split.agg(["size", "nunique"]).to_dict(orient="index")
    return {
        name: {"interactions": int(counts[name]["size"]), "users": int(counts[name]["nunique"])}
        for name in C.SPLIT_NAMES
    }


def sequence_length_stats(interactions: pd.DataFrame) -> dict[str, float]:
    lengths = interactions.groupby(C.USER_IDX, sort=False).size()
    return {
        "mean": round(float(lengths.mean()), 3),
        "median": float(lengths.median()),
        "p95": float(lengths.quantile(0.95, interpolation="nearest")),
        "max": int(lengths.max()),
    }


def write_prepared_pandas(prepared: PandasPrepared, out: Path, overwrite: bool = False) -> Path:
    """Write the folder atomically, in ``recsys.data.prepared``'s layout."""
    with atomic_directory(Path(out), overwrite=overwrite) as staging:
        for frame, name in (
            (prepared.interactions, INTERACTIONS_FILE),
            (prepared.users, USERS_FILE),
            (prepared.items, ITEMS_FILE),
        ):
            frame.to_parquet(staging / name, index=False, compression=PARQUET_COMPRESSION)
        write_json(staging / STATS_FILE, prepared.stats)
    return Path(out)
