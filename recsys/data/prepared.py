"""The prepared dataset folder: the contract between data preparation and training/evaluation.

Layout (plain Parquet, so a Spark or Ray job can produce it unchanged)::

    interactions.parquet  user_idx, item_idx, timestamp, position, split [, rating]
                          sorted by user_idx, position
    users.parquet         user_idx, user_id
    items.parquet         item_idx, item_id, count (all splits), train_count (training split)
    stats.json            format version, counts, filters, split, input fingerprint, ...
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import polars as pl

from recsys.data import columns as C
from recsys.data.vocab import IdVocabulary
from recsys.errors import DataError
from recsys.io import atomic_directory, write_json

FORMAT_VERSION = "recsys.prepared/v1"
INTERACTIONS_FILE = "interactions.parquet"
USERS_FILE = "users.parquet"
ITEMS_FILE = "items.parquet"
STATS_FILE = "stats.json"
_REQUIRED_INTERACTION_COLUMNS = (C.USER_IDX, C.ITEM_IDX, C.TIMESTAMP, C.POSITION, C.SPLIT)
_PARQUET_OPTIONS: Final[dict[str, Any]] = {
    "compression": "zstd",
    "compression_level": 1,
    "statistics": True,
}
"""zstd at level 1, pyarrow's default (polars defaults to 3). On the 9M-event benchmark output,
level 1 takes ~0.85 CPU-s and 82 MiB, level 3 ~1.35 CPU-s and 67 MiB; lz4 is no faster (~0.8
CPU-s) and larger (95 MiB), so zstd-1 is the better trade. Any Parquet reader decodes all three."""


@dataclass(frozen=True)
class PreparedDataset:
    """Indexed, cleaned, chronologically ordered and split interactions with their vocabularies."""

    interactions: pl.DataFrame
    users: IdVocabulary
    items: IdVocabulary
    stats: dict[str, Any]

    @property
    def num_users(self) -> int:
        return self.users.size

    @property
    def num_items(self) -> int:
        return self.items.size

    @property
    def fingerprint(self) -> str:
        """The SHA-256 fingerprint of the input log (``stats["input"]["fingerprint"]``); ``""``
        where the folder does not record one (e.g. written by another tool): unknown, so no
        check can compare it."""
        recorded = self.stats.get("input", {})
        return str(recorded.get("fingerprint", "") or "") if isinstance(recorded, dict) else ""

    def check_model_matches(self, num_items: int, fingerprint: str, flag: str) -> None:
        """Refuse a model trained on another catalogue size or input log than this dataset.

        ``flag`` names where the model came from in the message (``--checkpoint``,
        ``--artifact``); an empty fingerprint on either side is unknown and not compared.
        """
        if num_items != self.num_items:
            raise DataError(
                f"{flag} was trained on a catalogue of {num_items} items, but --data has "
                f"{self.num_items}: use it with the dataset it was trained on"
            )
        expected = self.fingerprint
        if fingerprint and expected and fingerprint != expected:
            raise DataError(
                f"{flag} was trained on another input log (fingerprint {fingerprint}) than "
                f"--data was prepared from ({expected})"
            )

    def split_frame(self, split: str) -> pl.DataFrame:
        """The events of one split, in chronological order per user."""
        if split not in C.SPLIT_NAMES:
            raise DataError(f"unknown split {split!r}: expected one of {', '.join(C.SPLIT_NAMES)}")
        return self.interactions.filter(pl.col(C.SPLIT) == split)


def write_prepared(dataset: PreparedDataset, out: Path, overwrite: bool = False) -> Path:
    """Write the dataset folder atomically: all files appear at ``out`` at once, or none."""
    with atomic_directory(Path(out), overwrite=overwrite) as staging:
        dataset.interactions.write_parquet(staging / INTERACTIONS_FILE, **_PARQUET_OPTIONS)
        dataset.users.table.write_parquet(staging / USERS_FILE, **_PARQUET_OPTIONS)
        dataset.items.table.write_parquet(staging / ITEMS_FILE, **_PARQUET_OPTIONS)
        write_json(staging / STATS_FILE, dataset.stats)
    return Path(out)


def load_prepared(path: Path) -> PreparedDataset:
    """Read and check a prepared dataset folder; a folder that is not one raises ``DataError``."""
    path = Path(path)
    hint = "create one with `recsys prepare`"
    if not path.is_dir():
        raise DataError(f"{path} is not a prepared dataset: no such folder ({hint})")
    for name in (STATS_FILE, INTERACTIONS_FILE, USERS_FILE, ITEMS_FILE):
        if not (path / name).is_file():
            raise DataError(f"{path} is not a prepared dataset: {name} is missing ({hint})")
    try:
        stats = json.loads((path / STATS_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path / STATS_FILE} is not valid JSON: {err}") from err
    version = stats.get("format_version") if isinstance(stats, dict) else None
    if version != FORMAT_VERSION:
        raise DataError(
            f"{path} has prepared-dataset format {version!r}; this version reads {FORMAT_VERSION!r}"
        )
    try:
        interactions = pl.read_parquet(path / INTERACTIONS_FILE)
        users = pl.read_parquet(path / USERS_FILE)
        items = pl.read_parquet(path / ITEMS_FILE)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise DataError(f"{path} has an unreadable Parquet file: {err}") from err
    missing = [c for c in _REQUIRED_INTERACTION_COLUMNS if c not in interactions.columns]
    if missing:
        raise DataError(f"{path / INTERACTIONS_FILE} lacks the columns {', '.join(missing)}")
    dataset = PreparedDataset(
        interactions=interactions,
        users=IdVocabulary(users, C.USER_IDX, C.USER_ID),
        items=IdVocabulary(items, C.ITEM_IDX, C.ITEM_ID),
        stats=stats,
    )
    if stats.get("num_interactions") != interactions.height:
        raise DataError(
            f"{path} is inconsistent: stats.json says {stats.get('num_interactions')} "
            f"interactions, {INTERACTIONS_FILE} has {interactions.height}"
        )
    return dataset
