"""Clean a canonical interaction frame: nulls, duplicates, rating threshold, iterative k-core.

Every step counts what it removed, so that ``stats.json`` can say where the rows went.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import polars as pl

from recsys.data import columns as C
from recsys.errors import ConfigError, DataError


@dataclass(frozen=True)
class CleaningConfig:
    """What to filter. The defaults filter nothing but null ids."""

    drop_duplicates: bool = False
    """Drop exact duplicate events (same user, item, timestamp and rating)."""
    min_rating: float | None = None
    """Keep only events whose rating is at least this; needs a rating column."""
    min_user_interactions: int = 1
    """k-core: every kept user has at least this many interactions."""
    min_item_interactions: int = 1
    """k-core: every kept item has at least this many interactions."""

    def __post_init__(self) -> None:
        if self.min_user_interactions < 1:
            raise ConfigError(
                f"min_user_interactions must be >= 1, got {self.min_user_interactions}"
            )
        if self.min_item_interactions < 1:
            raise ConfigError(
                f"min_item_interactions must be >= 1, got {self.min_item_interactions}"
            )

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class CleaningReport:
    """How many rows each step removed."""

    rows_read: int = 0
    null_ids_dropped: int = 0
    null_timestamps_dropped: int = 0
    duplicates_dropped: int = 0
    below_min_rating_dropped: int = 0
    k_core_dropped: int = 0
    k_core_iterations: int = 0
    rows_kept: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def clean_interactions(
    frame: pl.DataFrame, config: CleaningConfig
) -> tuple[pl.DataFrame, CleaningReport]:
    """Apply the configured filters in a fixed order: nulls, duplicates, rating, k-core."""
    report = CleaningReport(rows_read=frame.height)
    kept = frame.drop_nulls([C.USER_ID, C.ITEM_ID])
    report.null_ids_dropped = frame.height - kept.height
    if kept.get_column(C.TIMESTAMP).null_count() < kept.height:
        # The log has times: an event without one cannot be placed in its user's sequence.
        before = kept.height
        kept = kept.drop_nulls(C.TIMESTAMP)
        report.null_timestamps_dropped = before - kept.height

    if config.drop_duplicates:
        subset = [c for c in (C.USER_ID, C.ITEM_ID, C.TIMESTAMP, C.RATING) if c in kept.columns]
        before = kept.height
        kept = kept.unique(subset=subset, keep="first", maintain_order=True)
        report.duplicates_dropped = before - kept.height

    if config.min_rating is not None:
        if C.RATING not in kept.columns:
            raise DataError(
                "--min-rating needs a rating column, and the input has none "
                "(name it with --rating-col)"
            )
        before = kept.height
        kept = kept.filter(pl.col(C.RATING) >= config.min_rating)
        report.below_min_rating_dropped = before - kept.height

    before = kept.height
    kept, report.k_core_iterations = k_core(
        kept, config.min_user_interactions, config.min_item_interactions
    )
    report.k_core_dropped = before - kept.height
    report.rows_kept = kept.height
    if kept.height == 0:
        raise DataError(
            "no interactions left after cleaning "
            f"({report.rows_read} read, {report.null_ids_dropped} with null ids, "
            f"{report.duplicates_dropped} duplicates, "
            f"{report.below_min_rating_dropped} below --min-rating, "
            f"{report.k_core_dropped} removed by k-core with --min-user-interactions "
            f"{config.min_user_interactions} and --min-item-interactions "
            f"{config.min_item_interactions}): relax the filters"
        )
    return kept, report


def k_core(
    frame: pl.DataFrame,
    min_user_interactions: int,
    min_item_interactions: int,
    user_col: str = C.USER_ID,
    item_col: str = C.ITEM_ID,
) -> tuple[pl.DataFrame, int]:
    """Drop users and items below their thresholds, repeatedly, until nothing changes.

    The result is the unique largest sub-log where every user and every item meets its
    threshold (removal order does not matter), so removing both sides at once is safe.
    Returns the filtered frame and the number of filtering passes.

    >>> log = pl.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": [1, 2, 1, 2, 1]})
    >>> k_core(log, 2, 2)[0].height
    4
    """
    if min_user_interactions <= 1 and min_item_interactions <= 1:
        return frame, 0
    passes = 0
    while True:
        keep = (pl.len().over(user_col) >= min_user_interactions) & (
            pl.len().over(item_col) >= min_item_interactions
        )
        filtered = frame.filter(keep)
        passes += 1
        if filtered.height == frame.height:
            return filtered, passes
        frame = filtered
