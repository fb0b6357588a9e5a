"""Chronological order and splits: leave-one-out, temporal, no leakage (also as property tests),
clear errors."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data import CleaningConfig, PrepareConfig, SplitConfig, assign_split, prepare_dataset
from recsys.data import columns as C
from recsys.data.splits import Sequences
from recsys.errors import ConfigError, DataError

EVENT_ROWS = st.lists(
    st.tuples(st.integers(1, 8), st.integers(1, 8), st.integers(0, 30)), min_size=1, max_size=60
)
"""Small random logs as (user, item, time) rows, for the property tests."""


def _sequences(frame: pl.DataFrame, split: str | None = None) -> dict[int, list[int]]:
    if split is not None:
        frame = frame.filter(pl.col(C.SPLIT) == split)
    grouped = frame.group_by(C.USER_IDX, maintain_order=True).agg(pl.col(C.ITEM_IDX))
    return {row[0]: row[1] for row in grouped.iter_rows()}


def test_time_ties_are_broken_by_input_order(small_log: pl.DataFrame) -> None:
    dataset = prepare_dataset(small_log)
    items = dataset.items
    user_c = dataset.users.encode(["c"])[0]
    assert items.decode(_sequences(dataset.interactions)[user_c]) == ["x", "w", "y"]


def test_shuffled_input_gives_the_same_sequences(small_log: pl.DataFrame) -> None:
    # Ties aside, the order of rows in the file must not matter: times decide.
    untied = small_log.with_columns(pl.int_range(pl.len()).alias("timestamp") * 10)
    shuffled = untied.sample(fraction=1.0, shuffle=True, seed=3)
    assert _sequences(prepare_dataset(untied).interactions) == _sequences(
        prepare_dataset(shuffled).interactions
    )


def test_leave_one_out_holds_out_the_last_two(small_log: pl.DataFrame) -> None:
    frame = prepare_dataset(small_log).interactions
    full = _sequences(frame)
    tests = _sequences(frame, C.TEST)
    validations = _sequences(frame, C.VALIDATION)
    for user, sequence in full.items():
        assert tests[user] == sequence[-1:]
        assert validations[user] == sequence[-2:-1]
        assert _sequences(frame, C.TRAIN)[user] == sequence[:-2]


def test_leave_one_out_keeps_short_users_in_training() -> None:
    log = pl.DataFrame({"user_id": [1, 1, 2, 2, 2], "item_id": [1, 2, 1, 2, 3]})
    frame = prepare_dataset(log).interactions
    user_one = frame.filter(pl.col(C.USER_IDX) == 1)
    assert user_one.get_column(C.SPLIT).to_list() == [C.TRAIN, C.TRAIN]


def test_assign_split_labels_rows_in_any_order() -> None:
    # user 1: positions 0..3 (the last two held out); user 2: two events, all training
    frame = pl.DataFrame(
        {C.USER_IDX: [2, 1, 1, 2, 1, 1], C.POSITION: [1, 3, 0, 0, 2, 1]},
        schema={C.USER_IDX: pl.Int32, C.POSITION: pl.Int32},
    )
    labelled, description = assign_split(frame, SplitConfig())
    assert labelled.select(C.USER_IDX, C.POSITION).equals(frame)  # rows stay where they were
    assert labelled.get_column(C.SPLIT).to_list() == [
        C.TRAIN, C.TEST, C.TRAIN, C.TRAIN, C.VALIDATION, C.TRAIN,
    ]  # fmt: skip
    assert description["strategy"] == "leave-one-out"


def test_temporal_split_by_explicit_cutoffs(small_log: pl.DataFrame) -> None:
    config = SplitConfig(
        strategy="temporal",
        validation_cutoff=datetime.fromtimestamp(35, tz=UTC),
        test_cutoff=datetime.fromtimestamp(50, tz=UTC),
    )
    dataset = prepare_dataset(small_log, PrepareConfig(split=config))
    frame = dataset.interactions.with_columns(pl.col(C.TIMESTAMP).dt.epoch("s").alias("t"))
    assert frame.filter(pl.col(C.SPLIT) == C.TEST).get_column("t").to_list() == [50, 50, 60]
    assert sorted(frame.filter(pl.col(C.SPLIT) == C.VALIDATION).get_column("t")) == [35, 40]
    assert dataset.stats["split"]["test_cutoff"].startswith("1970-01-01T00:00:50")


def test_temporal_split_by_fractions_has_no_leakage(small_log: pl.DataFrame) -> None:
    config = SplitConfig(strategy="temporal", validation_fraction=0.2, test_fraction=0.2)
    frame = prepare_dataset(small_log, PrepareConfig(split=config)).interactions
    times = {
        name: frame.filter(pl.col(C.SPLIT) == name).get_column(C.TIMESTAMP)
        for name in C.SPLIT_NAMES
    }
    assert all(len(t) > 0 for t in times.values())
    assert times[C.TRAIN].max() < times[C.VALIDATION].min()  # type: ignore[operator]
    assert times[C.VALIDATION].max() < times[C.TEST].min()  # type: ignore[operator]


def test_temporal_split_without_timestamps_is_explained() -> None:
    log = pl.DataFrame({"user_id": [1, 1, 1], "item_id": [1, 2, 3]})
    with pytest.raises(DataError, match="temporal split needs timestamps"):
        prepare_dataset(log, PrepareConfig(split=SplitConfig(strategy="temporal")))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"test_fraction": 1.5}, "test_fraction must be in"),
        ({"validation_fraction": 0.6, "test_fraction": 0.5}, "must be < 1"),
        ({"test_cutoff": datetime(2024, 1, 1)}, "both validation_cutoff and test_cutoff"),
        (
            {"validation_cutoff": datetime(2024, 2, 1), "test_cutoff": datetime(2024, 1, 1)},
            "is after test_cutoff",
        ),
        ({"strategy": "random"}, "split must be"),
    ],
)
def test_bad_split_configs_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SplitConfig(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(EVENT_ROWS)
def test_leave_one_out_holds_out_each_users_latest_events(rows: list[tuple[int, int, int]]) -> None:
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    interactions = prepare_dataset(frame).interactions
    for (_user,), group in interactions.group_by(C.USER_IDX):
        group = group.sort(C.POSITION)
        splits = group.get_column(C.SPLIT).to_list()
        assert group.get_column(C.POSITION).to_list() == list(range(group.height))
        if group.height >= 3:
            assert splits[-2:] == [C.VALIDATION, C.TEST]
            assert set(splits[:-2]) <= {C.TRAIN}
        else:
            assert set(splits) == {C.TRAIN}
        times = group.get_column(C.TIMESTAMP)
        assert times.is_sorted()
    assert interactions.height == len(rows)


@settings(max_examples=100, deadline=None)
@given(EVENT_ROWS, st.floats(0.05, 0.45), st.floats(0.05, 0.45))
def test_temporal_split_never_trains_on_the_future(
    rows: list[tuple[int, int, int]], validation_fraction: float, test_fraction: float
) -> None:
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    config = PrepareConfig(
        cleaning=CleaningConfig(),
        split=SplitConfig(
            strategy="temporal",
            validation_fraction=validation_fraction,
            test_fraction=test_fraction,
        ),
    )
    interactions = prepare_dataset(frame, config).interactions
    latest: dict[str, object] = {}
    earliest: dict[str, object] = {}
    for name in C.SPLIT_NAMES:
        times = interactions.filter(pl.col(C.SPLIT) == name).get_column(C.TIMESTAMP)
        latest[name], earliest[name] = times.max(), times.min()
    if latest[C.TRAIN] is not None and earliest[C.VALIDATION] is not None:
        assert latest[C.TRAIN] < earliest[C.VALIDATION]  # type: ignore[operator]
    if latest[C.VALIDATION] is not None and earliest[C.TEST] is not None:
        assert latest[C.VALIDATION] < earliest[C.TEST]  # type: ignore[operator]
    if latest[C.TRAIN] is not None and earliest[C.TEST] is not None:
        assert latest[C.TRAIN] < earliest[C.TEST]  # type: ignore[operator]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=40))
def test_run_positions_count_from_zero_in_each_users_run(users: list[int]) -> None:
    sorted_users = np.array(sorted(users), dtype=np.int32)
    sequences = Sequences.of_sorted(sorted_users)
    expected = [sorted(users)[:i].count(u) for i, u in enumerate(sorted(users))]
    assert sequences.position.dtype == np.int32
    assert sequences.position.tolist() == expected
    assert sequences.lengths.sum() == len(users)
