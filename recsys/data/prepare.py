"""Raw log -> prepared dataset: read, clean, index, order, split, summarise.

``prepare_dataset`` is the one function the ``recsys prepare`` job, the benchmarks and the tests
call; it never touches the output folder (see ``write_prepared``). It reads with polars and then
works on the encoded log's numpy arrays (see ``events``), which is what makes it fast: on 10M
events the frame-level steps hash or sort the external ids again in every step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import polars as pl

from recsys.data import columns as C
from recsys.data.cleaning import CleaningConfig, clean_events
from recsys.data.events import Mask
from recsys.data.prepared import FORMAT_VERSION, PreparedDataset
from recsys.data.readers import ColumnMapping, LogFormat, read_interactions
from recsys.data.splits import (
    LEAVE_ONE_OUT,
    Sequences,
    SplitCodes,
    SplitConfig,
    split_column,
    temporal_codes,
)
from recsys.data.vocab import IdVocabulary, compact_codes
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

    The same steps as ``clean_interactions`` -> ``index_interactions`` ->
    ``order_chronologically`` -> ``assign_split``, done on the encoded, sorted log
    (``events.EventLog``): ids are coded and events sorted once, and every later step is a mask,
    a count or index arithmetic over arrays in the final order.
    """
    config = config or PrepareConfig()
    step = on_step or (lambda _name: None)
    step("reading")
    raw = read_interactions(source, config.log_format, config.mapping, event_order=False)
    step("cleaning")
    events, keep, report = clean_events(raw, config.cleaning)  # empties raw
    step("indexing")
    # Each encoded column is dropped as soon as its kept part is taken, so that at most one
    # column is held in both forms: the peak memory of logs near the size of memory.
    user, item, time_ms, rating_column = events.user, events.item, events.time_ms, events.rating
    user_ids, item_ids = events.user_ids, events.item_ids
    del events
    user_idx, user_ids = compact_codes(user[keep], user_ids)
    del user
    item_idx, item_ids = compact_codes(item[keep], item_ids)
    del item
    timestamps = _kept_timestamps(time_ms, keep)
    del time_ms
    rating = None if rating_column is None else rating_column.filter(pl.Series(keep))
    del rating_column, keep
    step("ordering and splitting")
    sequences = Sequences.of_sorted(user_idx)
    if config.split.strategy == "leave-one-out":
        codes, split_description = sequences.leave_one_out_codes(), dict(LEAVE_ONE_OUT)
    else:
        codes, split_description = temporal_codes(timestamps, config.split)
    interactions = pl.DataFrame(
        [
            pl.Series(C.USER_IDX, user_idx),
            pl.Series(C.ITEM_IDX, item_idx),
            timestamps,
            pl.Series(C.POSITION, sequences.position),
            split_column(codes),
            *([] if rating is None else [rating.alias(C.RATING)]),
        ]
    )
    step("summarising")
    users = IdVocabulary.from_sorted_ids(user_ids, C.USER_IDX, C.USER_ID)
    items = IdVocabulary.from_sorted_ids(
        item_ids, C.ITEM_IDX, C.ITEM_ID, **_item_counts(item_idx, codes, len(item_ids))
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
        "splits": _split_counts(sequences, codes),
        "sequence_length": _sequence_length_stats(sequences.lengths),
        "time_range": _time_range(timestamps),
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


def _kept_timestamps(time_ms: npt.NDArray[np.int64] | None, keep: Mask) -> pl.Series:
    """The ``timestamp`` column of the kept events (all null for a log without times)."""
    dtype = pl.Datetime("ms", "UTC")
    if time_ms is None:
        return pl.repeat(None, int(np.count_nonzero(keep)), dtype=dtype, eager=True).alias(
            C.TIMESTAMP
        )
    return pl.Series(C.TIMESTAMP, time_ms[keep]).cast(dtype)


def _item_counts(
    item_idx: npt.NDArray[np.int32], codes: SplitCodes, n_items: int
) -> dict[str, npt.NDArray[np.int64]]:
    """Per item (in index order): its events in all splits, and in the training split."""
    train = codes == C.SPLIT_NAMES.index(C.TRAIN)
    return {
        C.COUNT: np.bincount(item_idx, minlength=n_items + 1)[1:].astype(np.int64),
        "train_count": np.bincount(item_idx[train], minlength=n_items + 1)[1:].astype(np.int64),
    }


def _split_counts(sequences: Sequences, codes: SplitCodes) -> dict[str, dict[str, int]]:
    """Per split: its events, and the users with at least one of them."""
    counts = {}
    for code, name in enumerate(C.SPLIT_NAMES):
        in_split = codes == code
        counts[name] = {
            "interactions": int(np.count_nonzero(in_split)),
            "users": sequences.users_with(in_split),
        }
    return counts


def _sequence_length_stats(lengths: npt.NDArray[np.int64]) -> dict[str, float]:
    return {
        "mean": round(float(lengths.mean()), 3),
        "median": float(np.median(lengths)),
        "p95": float(np.quantile(lengths, 0.95)),
        "max": int(lengths.max()),
    }


def _time_range(times: pl.Series) -> dict[str, str | None]:
    if times.null_count() == times.len():
        return {"first": None, "last": None}
    return {"first": str(times.min()), "last": str(times.max())}
