"""The prepared dataset folder: round trip, refusals, and the real data's counts."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from recsys.data import columns as C
from recsys.data import load_prepared, prepare_dataset, write_prepared
from recsys.errors import DataError, OutputExistsError


def test_write_then_load_round_trips(tmp_path: Path, small_log: pl.DataFrame) -> None:
    dataset = prepare_dataset(small_log)
    out = write_prepared(dataset, tmp_path / "data")
    loaded = load_prepared(out)
    assert loaded.interactions.equals(dataset.interactions)
    assert loaded.items.table.equals(dataset.items.table)
    assert loaded.users.table.equals(dataset.users.table)
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["num_users"], stats["num_items"], stats["num_interactions"]) == (3, 4, 10)
    assert stats["input"]["fingerprint"].startswith("sha256-rows:")
    assert stats["filters"]["min_user_interactions"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no temp folder left


def test_item_popularity_counts_all_and_training_events(small_log: pl.DataFrame) -> None:
    items = prepare_dataset(small_log).items.table
    x = items.filter(pl.col(C.ITEM_ID) == "x").row(0, named=True)
    assert (x[C.COUNT], x["train_count"]) == (3, 2)


def test_existing_output_is_refused_unless_overwrite(
    tmp_path: Path, small_log: pl.DataFrame
) -> None:
    dataset = prepare_dataset(small_log)
    out = write_prepared(dataset, tmp_path / "data")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_prepared(dataset, out)
    write_prepared(dataset, out, overwrite=True)
    assert load_prepared(out).interactions.height == 10


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "stats.json").unlink(), "stats.json is missing"),
        (lambda p: (p / "items.parquet").unlink(), "items.parquet is missing"),
        (lambda p: (p / "stats.json").write_text("{"), "not valid JSON"),
        (
            lambda p: (p / "stats.json").write_text('{"format_version": "v0"}'),
            "format 'v0'",
        ),
    ],
)
def test_a_folder_that_is_not_a_prepared_dataset_is_explained(
    tmp_path: Path, small_log: pl.DataFrame, damage: object, message: str
) -> None:
    out = write_prepared(prepare_dataset(small_log), tmp_path / "data")
    damage(out)  # type: ignore[operator]
    with pytest.raises(DataError, match=message):
        load_prepared(out)


def test_missing_folder_is_explained(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder.*recsys prepare"):
        load_prepared(tmp_path / "nowhere")


@pytest.mark.dataset
def test_video_games_counts_match_the_paper_data(video_games_path: Path) -> None:
    dataset = prepare_dataset(video_games_path)
    assert (dataset.num_users, dataset.num_items, dataset.interactions.height) == (
        31013,
        23715,
        287107,
    )
    # Item ids 1..23715 without gaps map onto themselves, as in the authors' code.
    assert dataset.items.encode([1, 23715]) == [1, 23715]
