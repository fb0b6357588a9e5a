"""prepare_dataset (the array path) against a plain polars reference, on randomised logs.

The reference is the straightforward frame-level pipeline: ``unique`` for duplicates, a k-core
recounted with ``over`` each pass, a dense rank for the indices, a three-key sort. The logs mix
string ids, sparse integer ids, null ids and times, time ties, exact duplicates and ratings with
nulls and NaN, so every branch of the array path meets the case it shortcuts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data import (
    CleaningConfig,
    PrepareConfig,
    SplitConfig,
    assign_split,
    clean_interactions,
    index_interactions,
    order_chronologically,
    prepare_dataset,
    read_interactions,
)
from recsys.data import columns as C
from recsys.errors import DataError


def _reference(
    log: pl.DataFrame, cleaning: CleaningConfig, split: SplitConfig
) -> tuple[pl.DataFrame, dict[str, int], pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Cleaned frame, cleaning counts, and the interactions/users/items tables, the plain way."""
    raw = read_interactions(log)
    kept = raw.drop_nulls([C.USER_ID, C.ITEM_ID])
    counts = {"null_ids_dropped": raw.height - kept.height, "null_timestamps_dropped": 0}
    if kept.get_column(C.TIMESTAMP).null_count() < kept.height:
        counts["null_timestamps_dropped"] = kept.get_column(C.TIMESTAMP).null_count()
        kept = kept.drop_nulls(C.TIMESTAMP)
    before = kept.height
    if cleaning.drop_duplicates:
        subset = [c for c in (C.USER_ID, C.ITEM_ID, C.TIMESTAMP, C.RATING) if c in kept.columns]
        kept = kept.unique(subset=subset, keep="first", maintain_order=True)
    counts["duplicates_dropped"] = before - kept.height
    before = kept.height
    if cleaning.min_rating is not None:
        if C.RATING not in kept.columns:
            raise DataError("--min-rating needs a rating column")
        kept = kept.filter(pl.col(C.RATING) >= cleaning.min_rating)
    counts["below_min_rating_dropped"] = before - kept.height
    before, passes = kept.height, 0
    while cleaning.min_user_interactions > 1 or cleaning.min_item_interactions > 1:
        passes += 1
        filtered = kept.filter(
            (pl.len().over(C.USER_ID) >= cleaning.min_user_interactions)
            & (pl.len().over(C.ITEM_ID) >= cleaning.min_item_interactions)
        )
        if filtered.height == kept.height:
            break
        kept = filtered
    counts.update(k_core_dropped=before - kept.height, k_core_iterations=passes)
    if kept.height == 0:
        raise DataError("no interactions left after cleaning")
    indexed = kept.with_columns(
        pl.col(C.USER_ID).rank("dense").cast(pl.Int32).alias(C.USER_IDX),
        pl.col(C.ITEM_ID).rank("dense").cast(pl.Int32).alias(C.ITEM_IDX),
    )
    ordered, _ = assign_split(order_chronologically(indexed), split)
    interactions = ordered.select(
        C.USER_IDX,
        C.ITEM_IDX,
        C.TIMESTAMP,
        C.POSITION,
        C.SPLIT,
        *([C.RATING] if C.RATING in ordered.columns else []),
    )
    users = indexed.select(C.USER_IDX, C.USER_ID).unique(C.USER_IDX).sort(C.USER_IDX)
    items = (
        indexed.select(C.ITEM_IDX, C.ITEM_ID)
        .unique(C.ITEM_IDX)
        .sort(C.ITEM_IDX)
        .join(
            interactions.group_by(C.ITEM_IDX).agg(
                pl.len().cast(pl.Int64).alias(C.COUNT),
                (pl.col(C.SPLIT) == C.TRAIN).sum().cast(pl.Int64).alias("train_count"),
            ),
            on=C.ITEM_IDX,
            maintain_order="left",
        )
    )
    return kept, counts, interactions, users, items


def _ids(codes: list[int], kind: str, prefix: str) -> list[Any]:
    if kind == "dense":
        return [code + 1 for code in codes]
    if kind == "sparse":
        return [code * 1_000_000_007 - 3_000_000_000 for code in codes]
    # Lexicographic order differs from the codes' order: "u10" < "u3".
    return [f"{prefix}{(code * 7) % 11}" for code in codes]


@st.composite
def logs(draw: st.DrawFn) -> pl.DataFrame:
    """Small logs over few users, items and times, so ties and exact duplicates are common."""
    n = draw(st.integers(1, 40))
    codes = st.lists(st.integers(0, 5), min_size=n, max_size=n)
    id_kind = draw(st.sampled_from(["dense", "sparse", "string"]))
    columns: dict[str, list[Any]] = {
        "user_id": _ids(draw(codes), id_kind, "u"),
        "item_id": _ids(draw(codes), id_kind, "i"),
    }
    nulls = st.lists(st.booleans(), min_size=n, max_size=n)
    if draw(st.booleans()):
        columns["user_id"] = [
            None if null else u for u, null in zip(columns["user_id"], draw(nulls), strict=True)
        ]
    time_kind = draw(st.sampled_from(["none", "in order", "shuffled", "with nulls"]))
    if time_kind != "none":
        times = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
        if time_kind == "in order":
            times.sort()
        if time_kind == "with nulls":
            columns["timestamp"] = [
                None if null else 1_700_000_000 + t
                for t, null in zip(times, draw(nulls), strict=True)
            ]
        else:
            columns["timestamp"] = [1_700_000_000 + t for t in times]
    if draw(st.booleans()):
        ratings = st.sampled_from([1.0, 4.0, 5.0, float("nan"), None])
        columns["rating"] = draw(st.lists(ratings, min_size=n, max_size=n))
    return pl.DataFrame(columns)


configs = st.builds(
    CleaningConfig,
    drop_duplicates=st.booleans(),
    min_rating=st.sampled_from([None, None, 4.0]),
    min_user_interactions=st.integers(1, 3),
    min_item_interactions=st.integers(1, 3),
)
splits = st.sampled_from(
    [SplitConfig(), SplitConfig(strategy="temporal", validation_fraction=0.2, test_fraction=0.3)]
)


@settings(max_examples=300, deadline=None)
@given(logs(), configs, splits)
def test_prepare_matches_the_polars_reference(
    log: pl.DataFrame, cleaning: CleaningConfig, split: SplitConfig
) -> None:
    config = PrepareConfig(cleaning=cleaning, split=split)
    try:
        kept, counts, interactions, users, items = _reference(log, cleaning, split)
    except DataError as err:
        with pytest.raises(DataError, match=re.escape(str(err).split(" (")[0])):
            prepare_dataset(log, config)
        return
    dataset = prepare_dataset(log, config)
    assert dataset.interactions.equals(interactions)
    assert dataset.interactions.schema == interactions.schema
    assert dataset.users.table.equals(users)
    assert dataset.items.table.equals(items)
    assert dataset.items.table.schema == items.schema
    report = dataset.stats["cleaning"]
    assert {key: report[key] for key in counts} == counts
    assert report["rows_kept"] == interactions.height

    cleaned, _ = clean_interactions(read_interactions(log), cleaning)
    assert cleaned.equals(kept)
    indexed, user_vocab, item_vocab = index_interactions(cleaned)
    assert user_vocab.table.equals(users)
    assert indexed.get_column(C.ITEM_IDX).to_list() == (
        cleaned.get_column(C.ITEM_ID).rank("dense").cast(pl.Int32).to_list()
    )


def test_splits_and_sequence_stats_are_counted_from_the_arrays(small_log: pl.DataFrame) -> None:
    stats = prepare_dataset(small_log).stats
    assert stats["splits"] == {
        C.TRAIN: {"interactions": 4, "users": 3},
        C.VALIDATION: {"interactions": 3, "users": 3},
        C.TEST: {"interactions": 3, "users": 3},
    }
    assert stats["sequence_length"] == {"mean": 3.333, "median": 3.0, "p95": 3.9, "max": 4}
    assert stats["time_range"] == {
        "first": "1970-01-01 00:00:10+00:00",
        "last": "1970-01-01 00:01:00+00:00",
    }


def test_a_log_without_times_keeps_input_order_and_null_timestamps() -> None:
    log = pl.DataFrame({"user_id": ["b", "a", "b", "a", "b"], "item_id": [3, 1, 2, 2, 1]})
    interactions = prepare_dataset(log).interactions
    assert interactions.get_column(C.ITEM_IDX).to_list() == [1, 2, 3, 2, 1]
    assert interactions.get_column(C.TIMESTAMP).null_count() == interactions.height
    assert interactions.schema[C.TIMESTAMP] == pl.Datetime("ms", "UTC")


def test_fingerprint_tracks_the_input_file(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id\n1,1\n1,2\n")
    first = prepare_dataset(path).stats["input"]["fingerprint"]
    path.write_text("user_id,item_id\n1,1\n1,3\n")
    second = prepare_dataset(path).stats["input"]["fingerprint"]
    assert first.startswith("sha256:") and first != second
