"""Tests of the synthetic log generator: contract, structure, determinism, validation, writing."""

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from recsys.data.columns import ITEM_ID, TIMESTAMP, USER_ID
from recsys.data.synthetic import START_2024, NextItemTruth, SynthConfig, generate_log, write_log
from recsys.errors import ConfigError

SMALL = SynthConfig(n_users=60, n_items=40, n_events=900, seed=7)
NEXT_ITEM = "next_item"


@pytest.fixture(scope="module")
def default_log() -> pl.DataFrame:
    """The project's default demo log (2,000 users, 500 items, 40,000 events)."""
    return generate_log(SynthConfig())


def _next_pairs(frame: pl.DataFrame) -> pl.DataFrame:
    """Every (item, next item of the same user) pair, with the user."""
    return (
        frame.sort([USER_ID, TIMESTAMP])
        .with_columns(pl.col(ITEM_ID).shift(-1).over(USER_ID).alias(NEXT_ITEM))
        .drop_nulls(NEXT_ITEM)
    )


def _hit_rates(frame: pl.DataFrame) -> tuple[float, float]:
    """Next-item hit rates on odd users of two predictors fitted on even users.

    Returns (most frequent successor of the current item, globally most frequent next item).
    """
    pairs = _next_pairs(frame)
    train = pairs.filter(pl.col(USER_ID) % 2 == 0)
    test = pairs.filter(pl.col(USER_ID) % 2 == 1)
    best_successor = (
        train.group_by([ITEM_ID, NEXT_ITEM])
        .len()
        .sort(["len", NEXT_ITEM], descending=[True, False])
        .unique(ITEM_ID, keep="first", maintain_order=True)
        .select(ITEM_ID, pl.col(NEXT_ITEM).alias("predicted"))
    )
    scored = test.join(best_successor, on=ITEM_ID, how="left")
    successor_hits = (scored["predicted"] == scored[NEXT_ITEM]).fill_null(False).mean()
    most_popular = (
        train.group_by(NEXT_ITEM).len().sort(["len", NEXT_ITEM], descending=[True, False])
    )[NEXT_ITEM][0]
    popular_hits = (test[NEXT_ITEM] == most_popular).mean()
    assert isinstance(successor_hits, float) and isinstance(popular_hits, float)
    return successor_hits, popular_hits


# --- the contract ---------------------------------------------------------------------------


def test_columns_types_and_row_count() -> None:
    frame = generate_log(SMALL)
    assert frame.schema == pl.Schema({USER_ID: pl.Int64, ITEM_ID: pl.Int64, TIMESTAMP: pl.Int64})
    assert frame.height == SMALL.n_events
    assert frame.null_count().row(0) == (0, 0, 0)


def test_every_user_present_and_ids_in_range() -> None:
    frame = generate_log(SMALL)
    assert sorted(frame[USER_ID].unique()) == list(range(1, SMALL.n_users + 1))
    assert frame[ITEM_ID].min() >= 1  # type: ignore[operator]
    assert frame[ITEM_ID].max() <= SMALL.n_items  # type: ignore[operator]


def test_sorted_by_time_and_strictly_increasing_per_user() -> None:
    frame = generate_log(SMALL)
    assert frame[TIMESTAMP].is_sorted()
    gaps = frame.select(pl.col(TIMESTAMP).diff().over(USER_ID)).drop_nulls()[TIMESTAMP]
    assert gaps.len() == SMALL.n_events - SMALL.n_users
    assert gaps.min() >= 1  # type: ignore[operator]


def test_first_events_lie_in_the_start_window() -> None:
    config = dataclasses.replace(SMALL, start_timestamp=1_000, start_window_seconds=50)
    first = generate_log(config).group_by(USER_ID).agg(pl.col(TIMESTAMP).min())[TIMESTAMP]
    assert first.min() >= 1_000  # type: ignore[operator]
    assert first.max() < 1_050  # type: ignore[operator]


def test_default_start_is_2024() -> None:
    assert START_2024 == 1_704_067_200  # 2024-01-01T00:00:00Z
    frame = generate_log(SMALL)
    assert START_2024 <= frame[TIMESTAMP].min() < START_2024 + 366 * 86_400  # type: ignore[operator]


@pytest.mark.parametrize(
    "config",
    [
        SynthConfig(n_users=1, n_items=2, n_events=1),
        SynthConfig(n_users=5, n_items=2, n_events=5),
        SynthConfig(n_users=3, n_items=2, n_events=50, n_genres=10, p_follow=1.0),
        SynthConfig(n_users=20, n_items=7, n_events=300, n_successors=30, p_follow=0.0),
        SynthConfig(n_users=10, n_items=100, n_events=200, popularity_exponent=0.0),
        SynthConfig(n_users=10, n_items=100, n_events=200, popularity_exponent=400.0),
    ],
    ids=["one-event", "one-event-per-user", "always-follow", "never-follow", "flat", "steep"],
)
def test_edge_configs_keep_the_contract(config: SynthConfig) -> None:
    frame = generate_log(config)
    assert frame.height == config.n_events
    assert frame[USER_ID].n_unique() == config.n_users
    assert frame[ITEM_ID].is_between(1, config.n_items).all()
    assert frame[TIMESTAMP].is_sorted()


def test_an_item_never_follows_itself_through_a_successor_step() -> None:
    frame = generate_log(SynthConfig(n_users=30, n_items=12, n_events=3_000, p_follow=1.0))
    pairs = _next_pairs(frame)
    assert (pairs[ITEM_ID] != pairs[NEXT_ITEM]).all()


# --- determinism ----------------------------------------------------------------------------


def test_same_seed_same_frame() -> None:
    assert generate_log(SMALL).equals(generate_log(SynthConfig(**dataclasses.asdict(SMALL))))


def test_different_seed_different_frame() -> None:
    other = generate_log(dataclasses.replace(SMALL, seed=SMALL.seed + 1))
    assert not generate_log(SMALL).equals(other)


# --- realistic structure ------------------------------------------------------------------


def test_popularity_is_skewed(default_log: pl.DataFrame) -> None:
    config = SynthConfig()
    counts = default_log[ITEM_ID].value_counts()["count"].sort(descending=True)
    top_share = counts.head(config.n_items // 10).sum() / config.n_events
    assert top_share > 0.40


def test_sequence_lengths_are_long_tailed(default_log: pl.DataFrame) -> None:
    lengths = default_log.group_by(USER_ID).len()["len"]
    assert lengths.sum() == SynthConfig().n_events
    assert lengths.min() >= 1  # type: ignore[operator]
    assert lengths.max() > 5 * lengths.median()  # type: ignore[operator]


def test_next_item_is_predictable_from_the_current_item(default_log: pl.DataFrame) -> None:
    successor_hits, popular_hits = _hit_rates(default_log)
    assert successor_hits > 0.2
    assert successor_hits > 3 * popular_hits


def test_without_following_the_current_item_tells_little() -> None:
    """Control for the test above: with p_follow=0 the successor predictor loses its edge."""
    config = SynthConfig(p_follow=0.0, p_genre=0.0)
    successor_hits, popular_hits = _hit_rates(generate_log(config))
    assert successor_hits < 1.5 * popular_hits


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"n_users": 0}, "n_users"),
        ({"n_items": 1}, "n_items"),
        ({"n_events": 0}, "n_events"),
        ({"n_users": 10, "n_events": 5}, "n_events (5) must be >= n_users (10)"),
        ({"seed": -1}, "seed"),
        ({"n_users": "10"}, "n_users"),
        ({"n_items": True}, "n_items"),
        ({"n_events": 1.5}, "n_events"),
        ({"p_follow": 1.5}, "p_follow"),
        ({"p_follow": -0.1}, "p_follow"),
        ({"p_genre": 2}, "p_genre"),
        ({"p_genre": "half"}, "p_genre"),
        ({"popularity_exponent": -1.0}, "popularity_exponent"),
        ({"popularity_exponent": float("nan")}, "popularity_exponent"),
        ({"successor_exponent": -0.5}, "successor_exponent"),
        ({"successor_popularity": float("inf")}, "successor_popularity"),
        ({"n_genres": 0}, "n_genres"),
        ({"n_successors": 0}, "n_successors"),
        ({"length_sigma": -1}, "length_sigma"),
        ({"mean_gap_seconds": 0}, "mean_gap_seconds"),
        ({"start_timestamp": -5}, "start_timestamp"),
        ({"start_window_seconds": 0}, "start_window_seconds"),
    ],
)
def test_invalid_config_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(field)):
        SynthConfig(**changes)


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        SMALL.seed = 1  # type: ignore[misc]


# --- writing -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["log.parquet", "log.pq", "LOG.PARQUET"])
def test_write_log_parquet_round_trip(tmp_path: Path, name: str) -> None:
    frame = generate_log(SMALL)
    path = tmp_path / "nested" / "dir" / name
    write_log(frame, path)
    assert pl.read_parquet(path).equals(frame)
    assert [p.name for p in path.parent.iterdir()] == [name]


def test_write_log_csv_round_trip_with_header(tmp_path: Path) -> None:
    frame = generate_log(SMALL)
    path = tmp_path / "log.csv"
    write_log(frame, path)
    assert path.read_text().splitlines()[0] == f"{USER_ID},{ITEM_ID},{TIMESTAMP}"
    assert pl.read_csv(path, schema=frame.schema).equals(frame)
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]


def test_write_log_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("old\n")
    frame = generate_log(SMALL)
    write_log(frame, path)
    assert pl.read_csv(path).height == frame.height
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]


@pytest.mark.parametrize("name", ["log.json", "log", "log.parquet.gz"])
def test_write_log_rejects_unknown_suffix(tmp_path: Path, name: str) -> None:
    suffix = Path(name).suffix
    with pytest.raises(ConfigError, match=re.escape(repr(suffix))):
        write_log(generate_log(SMALL), tmp_path / "out" / name)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_target_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log.parquet"
    path.write_bytes(b"previous")

    def explode(self: pl.DataFrame, *args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", explode)
    with pytest.raises(OSError, match="disk full"):
        write_log(generate_log(SMALL), path)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["log.parquet"]


def test_the_truth_gives_every_drawn_next_item_a_positive_probability() -> None:
    """Each event after a user's first was drawn from the truth's distribution given the user
    and the event before it: it never has probability 0, and on average it is far likelier
    than a uniformly drawn item."""
    config = SynthConfig(n_users=300, n_items=200, n_events=6000, seed=4)
    frame = generate_log(config).sort("user_id", "timestamp", maintain_order=True)
    users = frame.get_column("user_id").to_numpy()
    items = frame.get_column("item_id").to_numpy()
    same_user = users[1:] == users[:-1]
    truth = NextItemTruth.of(config)
    probabilities = truth.probabilities(users[1:][same_user], items[:-1][same_user])
    drawn = probabilities[np.arange(len(probabilities)), items[1:][same_user]]
    assert drawn.min() > 0.0
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert drawn.mean() > 20 * (1.0 / config.n_items)


def test_the_truth_follows_successors_only_after_an_event() -> None:
    config = SynthConfig(n_users=10, n_items=50, n_events=100, p_follow=1.0, seed=1)
    truth = NextItemTruth.of(config)
    after = truth.probabilities(np.array([1]), np.array([5]))[0]
    assert (after > 0).sum() <= config.n_successors  # only item 5's successors
    first = truth.probabilities(np.array([1]), np.array([0]))[0]
    assert (first[1:] > 0).sum() == config.n_items  # a first event: any item, by popularity
