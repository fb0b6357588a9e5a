"""Cleaning: nulls, duplicates, rating threshold, k-core fixpoint, and the empty-result error."""

from __future__ import annotations

import polars as pl
import pytest

from recsys.data import CleaningConfig, clean_interactions, k_core, read_interactions
from recsys.data import columns as C
from recsys.errors import ConfigError, DataError


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
