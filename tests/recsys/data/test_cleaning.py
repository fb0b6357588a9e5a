"""Cleaning: nulls, duplicates, rating threshold, k-core fixpoint, and the empty-result error;
the k-core is the unique maximal sub-log (a property test)."""

from __future__ import annotations

from collections import Counter

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data import CleaningConfig, clean_interactions, k_core, read_interactions
from recsys.data import columns as C
from recsys.data.cleaning import clean_events, duplicate_mask
from recsys.data.events import encode_events
from recsys.errors import ConfigError, DataError

EVENT_ROWS = st.lists(
    st.tuples(st.integers(1, 8), st.integers(1, 8), st.integers(0, 30)), min_size=1, max_size=60
)
"""Small random logs as (user, item, time) rows, for the property tests."""


def _log(**extra: list[object]) -> pl.DataFrame:
    base: dict[str, list[object]] = {
        "user_id": [1, 1, 1, None, 2, 2],
        "item_id": [1, 2, 2, 3, None, 1],
        "timestamp": [1, 2, 2, 3, 4, 5],
    }
    base.update(extra)
    return read_interactions(pl.DataFrame(base))


def test_null_ids_are_dropped_and_counted() -> None:
    cleaned, report = clean_interactions(_log(), CleaningConfig())
    assert report.null_ids_dropped == 2
    assert cleaned.height == 4
    assert cleaned.get_column(C.USER_ID).null_count() == 0


def test_null_timestamps_dropped_when_the_log_has_times() -> None:
    frame = read_interactions(
        pl.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 1], "timestamp": [1, None, 3]})
    )
    cleaned, report = clean_interactions(frame, CleaningConfig())
    assert report.null_timestamps_dropped == 1
    assert cleaned.height == 2


def test_exact_duplicates_only_when_asked() -> None:
    _, kept_report = clean_interactions(_log(), CleaningConfig())
    cleaned, report = clean_interactions(_log(), CleaningConfig(drop_duplicates=True))
    assert kept_report.duplicates_dropped == 0
    assert report.duplicates_dropped == 1
    assert cleaned.height == 3
    # The first occurrence survives, so input order (the time tie-breaker) is preserved.
    assert cleaned.get_column(C.EVENT_ORDER).to_list() == [0, 1, 5]


def test_min_rating_filters_and_needs_a_rating_column() -> None:
    rated = _log(rating=[5, 1, 4, 5, 5, 2])
    cleaned, report = clean_interactions(rated, CleaningConfig(min_rating=4))
    assert report.below_min_rating_dropped == 2
    assert cleaned.get_column(C.RATING).min() == 4.0
    with pytest.raises(DataError, match="--min-rating needs a rating column"):
        clean_interactions(_log(), CleaningConfig(min_rating=4))


def test_k_core_iterates_to_a_fixpoint() -> None:
    # Removing item 4 (1 event) leaves user 3 with 1 event, which removes item 3's second event.
    frame = pl.DataFrame(
        {
            "user_id": [1, 1, 2, 2, 3, 3],
            "item_id": [1, 2, 1, 2, 3, 4],
        }
    )
    kept, passes = k_core(frame, 2, 2)
    assert sorted(kept.get_column("user_id").unique().to_list()) == [1, 2]
    assert sorted(kept.get_column("item_id").unique().to_list()) == [1, 2]
    assert passes >= 2


def test_k_core_that_empties_the_log_is_an_error_with_counts() -> None:
    config = CleaningConfig(min_user_interactions=10)
    with pytest.raises(DataError, match=r"no interactions left.*--min-user-interactions 10"):
        clean_interactions(_log(), config)


@pytest.mark.parametrize("field", ["min_user_interactions", "min_item_interactions"])
def test_impossible_thresholds_name_the_field(field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        CleaningConfig(**{field: 0})  # type: ignore[arg-type]


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
    assert events.row is not None
    assert sorted(events.row[duplicate_mask(events)].tolist()) == [3]


def test_the_kept_events_come_out_in_chronological_order() -> None:
    log = read_interactions(
        pl.DataFrame({"user_id": [2, 1, 2, 1], "item_id": [1, 1, 2, 2], "timestamp": [5, 9, 3, 1]})
    )
    events, keep, report = clean_events(log, CleaningConfig())
    # Input rows 3, 1 (user 1 at times 1, 9), then 2, 0 (user 2 at times 3, 5).
    assert events.user[keep].tolist() == [0, 0, 1, 1]
    assert events.item[keep].tolist() == [1, 0, 1, 0]
    assert events.time_ms is not None
    assert (events.time_ms[keep] // 1000).tolist() == [1, 9, 3, 5]
    assert report.rows_kept == 4
    # Consumed: preparation never holds the raw and the encoded log together.
    assert log.columns == [C.EVENT_ORDER]


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
@given(EVENT_ROWS, st.integers(1, 4), st.integers(1, 4))
def test_k_core_matches_one_at_a_time_removal(
    rows: list[tuple[int, int, int]], min_user: int, min_item: int
) -> None:
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "t"], orient="row")
    kept, _ = k_core(frame, min_user, min_item)
    assert sorted(kept.rows()) == sorted(_reference_k_core(rows, min_user, min_item))
    if kept.height:
        assert kept.group_by("user_id").len().get_column("len").min() >= min_user  # type: ignore[operator]
        assert kept.group_by("item_id").len().get_column("len").min() >= min_item  # type: ignore[operator]
