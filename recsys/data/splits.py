"""Chronological ordering and train/validation/test splits.

- ``leave-one-out`` (the SASRec paper's protocol): per user, the last event is the test target and
  the second-to-last the validation target; users with fewer than 3 events keep all in training.
- ``temporal`` (what production sees): global time cut-offs; every event at or after the test
  cut-off is test, between the validation and test cut-offs validation, before that training.
  No training event is later than any validation or test event, so nothing leaks from the future.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from recsys.data import columns as C
from recsys.errors import ConfigError, DataError

SplitStrategy = Literal["leave-one-out", "temporal"]
SPLIT_DTYPE = pl.Enum(list(C.SPLIT_NAMES))
SplitCodes = npt.NDArray[np.uint8]
"""One split per event, as its index in ``columns.SPLIT_NAMES`` (0 train, 1 validation, 2 test)."""
_LOO_MIN_EVENTS = 3
LEAVE_ONE_OUT: dict[str, str] = {
    "strategy": "leave-one-out",
    "rule": "per user: last event test, second-to-last validation (users with >= 3 events)",
}
"""How ``stats.json`` describes the leave-one-out split."""


@dataclass(frozen=True)
class SplitConfig:
    """How to split. For ``temporal``, explicit cut-offs win over fractions of the time range."""

    strategy: SplitStrategy = "leave-one-out"
    validation_cutoff: datetime | None = None
    test_cutoff: datetime | None = None
    validation_fraction: float = 0.1
    """Share of events (by time quantile) in validation when no cut-off is given."""
    test_fraction: float = 0.1
    """Share of events (by time quantile) in test when no cut-off is given."""

    def __post_init__(self) -> None:
        if self.strategy not in ("leave-one-out", "temporal"):
            raise ConfigError(f"split must be 'leave-one-out' or 'temporal', got {self.strategy!r}")
        for name in ("validation_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ConfigError(f"{name} must be in (0, 1), got {value}")
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ConfigError(
                "validation_fraction + test_fraction must be < 1, got "
                f"{self.validation_fraction} + {self.test_fraction}"
            )
        if (self.validation_cutoff is None) != (self.test_cutoff is None):
            raise ConfigError("give both validation_cutoff and test_cutoff, or neither")
        if (
            self.validation_cutoff is not None
            and self.test_cutoff is not None
            and _utc(self.validation_cutoff) > _utc(self.test_cutoff)
        ):
            raise ConfigError(
                f"validation_cutoff ({self.validation_cutoff.isoformat()}) is after "
                f"test_cutoff ({self.test_cutoff.isoformat()})"
            )


@dataclass(frozen=True)
class Sequences:
    """Each user's events as one run of a frame sorted by user: run lengths and positions."""

    starts: npt.NDArray[np.int64]
    """Where each user's run starts, in the order the users appear."""
    lengths: npt.NDArray[np.int64]
    """Events per user, in the same order."""
    position: npt.NDArray[np.int32]
    """Each event's 0-based position in its user's run."""

    @classmethod
    def of_sorted(cls, users: npt.NDArray[np.int32]) -> Sequences:
        """Runs of equal values in ``users`` (sorted, so each user is one run).

        >>> Sequences.of_sorted(np.array([4, 4, 4, 7, 9, 9], dtype=np.int32)).position.tolist()
        [0, 1, 2, 0, 0, 1]
        """
        starts_run = np.ones(len(users), dtype=bool)
        starts_run[1:] = users[1:] != users[:-1]
        starts = np.flatnonzero(starts_run)
        del starts_run
        lengths = np.diff(starts, append=len(users))
        # A running count that each run start sets back to 0, in int32 throughout: arange minus
        # the repeated starts would hold three int64 copies of the log (the peak of `prepare`).
        position = np.ones(len(users), dtype=np.int32)
        if len(users):
            position[0] = 0
            position[starts[1:]] = 1 - lengths[:-1]
            np.cumsum(position, out=position)
        return cls(starts=starts, lengths=lengths, position=position)

    def users_with(self, events: npt.NDArray[np.bool_]) -> int:
        """How many users have at least one of the flagged events."""
        if len(self.starts) == 0:
            return 0
        return int(np.count_nonzero(np.logical_or.reduceat(events, self.starts)))

    def leave_one_out_codes(self) -> SplitCodes:
        """Each user's last event is test, the one before validation, the rest training.

        Users with fewer than 3 events keep all of them in training. Index arithmetic on the run
        ends; the one leave-one-out rule (``assign_split`` uses it too).

        >>> Sequences.of_sorted(np.array([4, 4, 4, 7, 9, 9], dtype=np.int32)).leave_one_out_codes()
        array([0, 1, 2, 0, 0, 0], dtype=uint8)
        """
        codes = np.full(len(self.position), C.SPLIT_NAMES.index(C.TRAIN), dtype=np.uint8)
        ends = (self.starts + self.lengths)[self.lengths >= _LOO_MIN_EVENTS]
        codes[ends - 1] = C.SPLIT_NAMES.index(C.TEST)
        codes[ends - 2] = C.SPLIT_NAMES.index(C.VALIDATION)
        return codes


def order_chronologically(frame: pl.DataFrame) -> pl.DataFrame:
    """Sort by user, then time, ties broken by input order, and number each user's events.

    (``prepare_dataset`` gets the same order from ``events.chronological_order``.)
    """
    keys = [C.USER_IDX, C.TIMESTAMP, C.EVENT_ORDER]
    ordered = frame.sort(keys)
    return ordered.with_columns(
        pl.int_range(pl.len(), dtype=pl.Int32).over(C.USER_IDX).alias(C.POSITION)
    )


def assign_split(frame: pl.DataFrame, config: SplitConfig) -> tuple[pl.DataFrame, dict[str, str]]:
    """Add the ``split`` column to a chronologically ordered frame.

    Returns the frame and a description of the split (strategy and cut-offs) for ``stats.json``.
    Rows may come in any order: leave-one-out labels them in (user, position) order with the rule
    ``prepare_dataset`` uses, ``Sequences.leave_one_out_codes``, and maps the labels back.
    """
    if config.strategy == "leave-one-out":
        order = frame.select(pl.arg_sort_by(C.USER_IDX, C.POSITION)).to_series().to_numpy()
        users = frame.get_column(C.USER_IDX).to_numpy()[order]
        codes = np.empty(frame.height, dtype=np.uint8)
        codes[order] = Sequences.of_sorted(users).leave_one_out_codes()
        return frame.with_columns(split_column(codes)), dict(LEAVE_ONE_OUT)
    codes, description = temporal_codes(frame.get_column(C.TIMESTAMP), config)
    return frame.with_columns(split_column(codes)), description


def temporal_codes(timestamps: pl.Series, config: SplitConfig) -> tuple[SplitCodes, dict[str, str]]:
    """Per event: test at or after the test cut-off, validation at or after the validation one.

    Returns the codes and the strategy with its cut-offs (given, or time quantiles).
    """
    if timestamps.null_count() == timestamps.len():
        raise DataError(
            "the temporal split needs timestamps and this log has none "
            "(map one with --time-col, or use --split leave-one-out)"
        )
    if config.validation_cutoff is not None and config.test_cutoff is not None:
        validation_cutoff = _utc(config.validation_cutoff)
        test_cutoff = _utc(config.test_cutoff)
    else:
        validation_cutoff = _quantile_time(
            timestamps, 1.0 - config.test_fraction - config.validation_fraction
        )
        test_cutoff = _quantile_time(timestamps, 1.0 - config.test_fraction)
    time = pl.col(C.TIMESTAMP)
    split = (
        pl.when(time >= test_cutoff)
        .then(pl.lit(C.SPLIT_NAMES.index(C.TEST)))
        .when(time >= validation_cutoff)
        .then(pl.lit(C.SPLIT_NAMES.index(C.VALIDATION)))
        .otherwise(pl.lit(C.SPLIT_NAMES.index(C.TRAIN)))
    )
    codes = timestamps.alias(C.TIMESTAMP).to_frame().select(split.cast(pl.UInt8)).to_series()
    return codes.to_numpy(), {
        "strategy": config.strategy,
        "validation_cutoff": validation_cutoff.isoformat(),
        "test_cutoff": test_cutoff.isoformat(),
    }


def split_column(codes: SplitCodes) -> pl.Series:
    """The ``split`` column (an Enum of ``SPLIT_NAMES``) from split codes."""
    return pl.Series(C.SPLIT, list(C.SPLIT_NAMES), dtype=SPLIT_DTYPE).gather(codes)


def _quantile_time(times: pl.Series, fraction: float) -> datetime:
    value = times.dt.epoch("ms").quantile(fraction, interpolation="lower")
    assert value is not None  # times has at least one non-null value here
    return datetime.fromtimestamp(float(value) / 1000.0, tz=UTC)


def _utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
