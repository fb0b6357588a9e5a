"""The encoded log: id codes, the one chronological sort (three ways), duplicates as neighbours."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data import CleaningConfig, read_interactions
from recsys.data import columns as C
from recsys.data.cleaning import clean_events, duplicate_mask
from recsys.data.events import chronological_order, encode_events
from recsys.data.vocab import compact_codes, encode_ids
from recsys.errors import DataError


def _lexsort_reference(
    user: npt.NDArray[np.int32], time_ms: npt.NDArray[np.int64] | None
) -> npt.NDArray[np.int64]:
    rows = np.arange(len(user))
    keys = (rows, user) if time_ms is None else (rows, time_ms, user)
    return np.lexsort(keys)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(-3, 3)), min_size=1, max_size=50),
    st.sampled_from(["shuffled", "in order", "none", "wide", "overflowing"]),
)
def test_chronological_order_is_user_time_then_input_order(
    events: list[tuple[int, int]], time_kind: str
) -> None:
    user = np.array([u for u, _ in events], dtype=np.int32)
    times = np.array([t for _, t in events], dtype=np.int64)
    time_ms: npt.NDArray[np.int64] | None = {
        "shuffled": times,
        "in order": np.sort(times),
        "none": None,
        # The key fits in int64, but not with the row number packed beside it.
        "wide": times * 2**55,
        # user * span + time would overflow int64: the two-column sort takes over.
        "overflowing": times * 2**60,
    }[time_kind]
    order = chronological_order(user, time_ms)
    assert order.tolist() == _lexsort_reference(user, time_ms).tolist()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.integers(-(2**40), 2**40)), max_size=40),
    st.booleans(),
)
def test_codes_are_dense_ranks_in_both_ways(values: list[int | None], compact: bool) -> None:
    # Compact integer ranges take the lookup table, anything else the sort and join.
    ids = pl.Series("id", [v % 50 if compact and v is not None else v for v in values], pl.Int64)
    distinct, codes = encode_ids(ids)
    assert distinct.to_list() == ids.unique().sort().to_list()
    expected = ids.rank("dense") - 1
    if ids.null_count():
        expected = expected.fill_null(-1) + 1  # a null id is a value of its own, first
    assert codes.tolist() == expected.cast(pl.Int32).to_list()
    assert codes.dtype == np.int32


def test_string_codes_follow_lexicographic_order() -> None:
    distinct, codes = encode_ids(pl.Series("id", ["b", "a10", "a9", "b"]))
    assert distinct.to_list() == ["a10", "a9", "b"]
    assert codes.tolist() == [2, 0, 1, 2]


def test_compacting_closes_the_gaps_and_keeps_the_order() -> None:
    indices, kept = compact_codes(np.array([4, 1, 4, 3], dtype=np.int32), pl.Series(list("abcde")))
    assert indices.tolist() == [3, 1, 3, 2]
    assert kept.to_list() == ["b", "d", "e"]


def test_duplicates_are_found_among_same_user_same_time_neighbours() -> None:
    log = read_interactions(
        pl.DataFrame(
            {
                "user_id": [1, 2, 1, 1, 1, 1],
                "item_id": [5, 5, 6, 5, 5, 5],
                "timestamp": [10, 10, 10, 10, 20, 10],
                "rating": [1.0, 1.0, 1.0, 1.0, 1.0, None],
            }
        )
    )
    events = encode_events(log)
    # Rows 0 and 3 are exact copies; 2 (item), 4 (time), 5 (rating) and 1 (user) are not.
    assert sorted(events.row[duplicate_mask(events)].tolist()) == [3]


def test_the_kept_events_come_out_in_chronological_order() -> None:
    log = read_interactions(
        pl.DataFrame({"user_id": [2, 1, 2, 1], "item_id": [1, 1, 2, 2], "timestamp": [5, 9, 3, 1]})
    )
    events, keep, report = clean_events(log, CleaningConfig())
    assert events.row[keep].tolist() == [3, 1, 2, 0]
    assert report.rows_kept == 4


def test_partly_missing_times_must_be_dropped_before_encoding() -> None:
    log = read_interactions(
        pl.DataFrame({"user_id": [1, 1], "item_id": [1, 2], "timestamp": [5, None]})
    )
    with pytest.raises(DataError, match="no timestamp"):
        encode_events(log)
    assert encode_events(log.drop_nulls(C.TIMESTAMP)).row.tolist() == [0]
