"""Property tests: the k-core is the unique maximal sub-log, and splits never leak the future."""

from __future__ import annotations

from collections import Counter

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data import CleaningConfig, PrepareConfig, SplitConfig, k_core, prepare_dataset
from recsys.data import columns as C

events = st.lists(
    st.tuples(st.integers(1, 8), st.integers(1, 8), st.integers(0, 30)), min_size=1, max_size=60
)


def _reference_k_core(
    rows: list[tuple[int, int, int]], min_user: int, min_item: int
) -> list[tuple[int, int, int]]:
    """Remove one offending row at a time, the slowest obviously-correct way."""
    kept = list(rows)
    while True:
        users = Counter(r[0] for r in kept)
        items = Counter(r[1] for r in kept)
        bad = [r for r in kept if users[r[0]] < min_user or items[r[1]] < min_item]
        if not bad:
            return kept
        kept.remove(bad[0])


@settings(max_examples=150, deadline=None)
@given(events, st.integers(1, 4), st.integers(1, 4))
def test_k_core_matches_one_at_a_time_removal(
    rows: list[tuple[int, int, int]], min_user: int, min_item: int
) -> None:
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "t"], orient="row")
    kept, _ = k_core(frame, min_user, min_item)
    assert sorted(kept.rows()) == sorted(_reference_k_core(rows, min_user, min_item))
    if kept.height:
        assert kept.group_by("user_id").len().get_column("len").min() >= min_user  # type: ignore[operator]
        assert kept.group_by("item_id").len().get_column("len").min() >= min_item  # type: ignore[operator]


@settings(max_examples=100, deadline=None)
@given(events)
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
@given(events, st.floats(0.05, 0.45), st.floats(0.05, 0.45))
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
