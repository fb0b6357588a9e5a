"""Read interaction logs in every supported format into one canonical polars frame.

The canonical frame has the columns ``user_id``, ``item_id``, ``timestamp`` (``Datetime[ms, UTC]``,
null when the input has no time), ``rating`` (only when the input has one) and ``event_order``
(input row number; left out with ``event_order=False`` by ``prepare_dataset``, which keeps input
order by other means and would pay 8 bytes an event for it). Readers never filter anything:
cleaning is the next step's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import pandas as pd
import polars as pl

from recsys.data import columns as C
from recsys.errors import DataError

LogFormat = Literal[
    "auto", "csv", "tsv", "parquet", "jsonl", "movielens", "movielens-100k", "user-item"
]
"""``movielens``: ML-1M/10M ``ratings.dat`` (``::``-separated); ``movielens-100k``: ``u.data``
(tab-separated); ``user-item``: one ``user item`` pair per line, line order = time order."""

TimeUnit = Literal["auto", "s", "ms"]

LOG_FORMATS: tuple[str, ...] = get_args(LogFormat)
_HEADERLESS_FORMATS = {"movielens", "movielens-100k", "user-item"}
_EPOCH_MS_THRESHOLD = 100_000_000_000
"""Epoch values above this are milliseconds: as seconds they would lie after the year 5000."""
_FLOAT_EXACT_LIMIT = 2**53
"""Integers up to this are exact in float64."""


@dataclass(frozen=True)
class ColumnMapping:
    """Which input columns hold the user, item, time and rating (for formats with a header)."""

    user_col: str = C.USER_ID
    item_col: str = C.ITEM_ID
    time_col: str | None = C.TIMESTAMP
    """``None``: the input has no time column; line order is the time order."""
    rating_col: str | None = None
    """``None``: look for a column called ``rating`` and use it if present."""
    time_unit: TimeUnit = "auto"


def detect_format(path: Path) -> LogFormat:
    """Guess the format from the file name, then from the first line.

    >>> detect_format(Path("logs/events.parquet"))
    'parquet'
    """
    name = path.name.lower()
    by_suffix: dict[str, LogFormat] = {
        ".csv": "csv",
        ".tsv": "tsv",
        ".parquet": "parquet",
        ".pq": "parquet",
        ".jsonl": "jsonl",
        ".ndjson": "jsonl",
    }
    if name == "ratings.dat":
        return "movielens"
    if name == "u.data":
        return "movielens-100k"
    suffix = path.suffix.lower()
    if suffix in by_suffix:
        return by_suffix[suffix]
    first_line = _first_line(path)
    if "::" in first_line:
        return "movielens"
    fields = first_line.split("\t")
    if len(fields) == 4 and all(f.strip().lstrip("-").isdigit() for f in fields):
        return "movielens-100k"
    if first_line.startswith("{"):
        return "jsonl"
    if re.fullmatch(r"\s*\S+\s+\S+\s*", first_line):
        return "user-item"
    raise DataError(
        f"cannot detect the format of {path}: pass --format, one of "
        f"{', '.join(f for f in LOG_FORMATS if f != 'auto')}"
    )


def read_interactions(
    source: str | Path | pl.DataFrame | pd.DataFrame,
    log_format: LogFormat = "auto",
    mapping: ColumnMapping | None = None,
    *,
    event_order: bool = True,
) -> pl.DataFrame:
    """Read a log file or an in-memory pandas/polars frame into the canonical frame.

    ``event_order=False`` leaves out the ``event_order`` column (the row order is the input order).

    Raises ``DataError`` naming the problem: a missing file, an unknown format, a missing column
    (with the columns found), an unparsable timestamp (with its row).
    """
    mapping = mapping or ColumnMapping()
    if isinstance(source, pd.DataFrame):
        return _canonical(
            _from_pandas(source), mapping, origin="the pandas frame", event_order=event_order
        )
    if isinstance(source, pl.DataFrame):
        return _canonical(source, mapping, origin="the polars frame", event_order=event_order)
    path = Path(source)
    if not path.exists():
        raise DataError(f"input file not found: {path}")
    if not path.is_file():
        raise DataError(f"input is not a file: {path}")
    if log_format not in LOG_FORMATS:
        raise DataError(f"unknown format {log_format!r}: expected one of {', '.join(LOG_FORMATS)}")
    resolved = detect_format(path) if log_format == "auto" else log_format
    if resolved in _HEADERLESS_FORMATS:
        if mapping != ColumnMapping() and mapping != ColumnMapping(time_unit=mapping.time_unit):
            raise DataError(
                f"format {resolved!r} has fixed columns: --user-col/--item-col/--time-col/"
                "--rating-col apply only to csv, tsv, parquet and jsonl"
            )
        return _read_headerless(path, resolved, mapping.time_unit, event_order)
    frame = _read_with_header(path, resolved)
    return _canonical(frame, mapping, origin=str(path), event_order=event_order)


def _first_line(path: Path) -> str:
    with path.open("rb") as handle:
        raw = handle.readline(4096)
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise DataError(f"cannot detect the format of {path}: it is not UTF-8 text") from err


def _read_with_header(path: Path, log_format: str) -> pl.DataFrame:
    try:
        if log_format == "parquet":
            return pl.read_parquet(path)
        if log_format == "jsonl":
            return pl.read_ndjson(path, infer_schema_length=10_000)
        separator = "\t" if log_format == "tsv" else ","
        return pl.read_csv(path, separator=separator, infer_schema_length=10_000)
    except (pl.exceptions.PolarsError, OSError, ValueError) as err:
        raise DataError(f"cannot read {path} as {log_format}: {_first_error_line(err)}") from err


def _read_headerless(
    path: Path, log_format: str, time_unit: TimeUnit, event_order: bool
) -> pl.DataFrame:
    try:
        if log_format == "movielens":
            # '::' is two single-byte separators with an empty field between them.
            raw = pl.read_csv(path, separator=":", has_header=False, infer_schema_length=10_000)
            if raw.width != 7:
                raise DataError(
                    f"{path} is not a MovieLens ratings.dat: expected 'user::item::rating::time' "
                    f"lines, found {(raw.width + 1) // 2} fields"
                )
            frame = raw.select(
                pl.col(raw.columns[0]).alias(C.USER_ID),
                pl.col(raw.columns[2]).alias(C.ITEM_ID),
                pl.col(raw.columns[4]).cast(pl.Float64).alias(C.RATING),
                pl.col(raw.columns[6]).alias(C.TIMESTAMP),
            )
        elif log_format == "movielens-100k":
            raw = pl.read_csv(path, separator="\t", has_header=False, infer_schema_length=10_000)
            if raw.width != 4:
                raise DataError(
                    f"{path} is not a MovieLens u.data: expected 4 tab-separated fields "
                    f"(user, item, rating, time), found {raw.width}"
                )
            frame = raw.select(
                pl.col(raw.columns[0]).alias(C.USER_ID),
                pl.col(raw.columns[1]).alias(C.ITEM_ID),
                pl.col(raw.columns[2]).cast(pl.Float64).alias(C.RATING),
                pl.col(raw.columns[3]).alias(C.TIMESTAMP),
            )
        else:
            frame = _read_user_item(path)
            return _canonical(
                frame,
                ColumnMapping(time_col=None),
                origin=str(path),
                keep_rating=False,
                event_order=event_order,
            )
    except pl.exceptions.PolarsError as err:
        raise DataError(f"cannot read {path} as {log_format}: {_first_error_line(err)}") from err
    mapping = ColumnMapping(rating_col=C.RATING, time_unit=time_unit)
    return _canonical(frame, mapping, origin=str(path), event_order=event_order)


def _read_user_item(path: Path) -> pl.DataFrame:
    """The SASRec authors' format: ``user item`` per line, whitespace-separated, no header."""
    raw = pl.read_csv(
        path,
        separator=" ",
        has_header=False,
        infer_schema_length=10_000,
        truncate_ragged_lines=False,
    )
    if raw.width < 2:
        raise DataError(f"{path} is not a 'user item' file: expected two fields per line")
    return raw.select(
        pl.col(raw.columns[0]).alias(C.USER_ID), pl.col(raw.columns[1]).alias(C.ITEM_ID)
    )


def _from_pandas(frame: pd.DataFrame) -> pl.DataFrame:
    try:
        return pl.from_pandas(frame)
    except (TypeError, ValueError, pl.exceptions.PolarsError) as err:
        raise DataError(f"cannot convert the pandas frame: {_first_error_line(err)}") from err


def _canonical(
    frame: pl.DataFrame,
    mapping: ColumnMapping,
    origin: str,
    keep_rating: bool = True,
    event_order: bool = True,
) -> pl.DataFrame:
    """Select and rename the mapped columns, normalise time, and number the rows."""
    _require_columns(frame, mapping, origin)
    exprs: list[pl.Expr] = [
        pl.col(mapping.user_col).alias(C.USER_ID),
        pl.col(mapping.item_col).alias(C.ITEM_ID),
    ]
    for name, source_col in ((C.USER_ID, mapping.user_col), (C.ITEM_ID, mapping.item_col)):
        dtype = frame.schema[source_col]
        if not (dtype.is_integer() or dtype == pl.String or dtype == pl.Categorical):
            raise DataError(
                f"column {source_col!r} ({name}) in {origin} has type {dtype}: ids must be "
                "integers or strings"
            )
    if mapping.time_col is not None and mapping.time_col in frame.columns:
        exprs.append(_normalise_time(frame, mapping.time_col, mapping.time_unit, origin))
    else:
        exprs.append(pl.lit(None, dtype=pl.Datetime("ms", "UTC")).alias(C.TIMESTAMP))
    rating_col = mapping.rating_col
    if rating_col is None and C.RATING in frame.columns:
        rating_col = C.RATING
    if keep_rating and rating_col is not None:
        if not frame.schema[rating_col].is_numeric():
            raise DataError(
                f"rating column {rating_col!r} in {origin} has type "
                f"{frame.schema[rating_col]}: expected numbers"
            )
        exprs.append(pl.col(rating_col).cast(pl.Float64).alias(C.RATING))
    canonical = frame.select(exprs)
    casts = [
        pl.col(C.USER_ID).cast(_id_dtype(frame.schema[mapping.user_col])),
        pl.col(C.ITEM_ID).cast(_id_dtype(frame.schema[mapping.item_col])),
    ]
    if event_order:
        canonical = canonical.with_row_index(C.EVENT_ORDER)
        casts.append(pl.col(C.EVENT_ORDER).cast(pl.Int64))
    return canonical.with_columns(casts)


def _id_dtype(dtype: pl.DataType) -> pl.DataType:
    return pl.Int64() if dtype.is_integer() else pl.String()


def _require_columns(frame: pl.DataFrame, mapping: ColumnMapping, origin: str) -> None:
    wanted = [("--user-col", mapping.user_col), ("--item-col", mapping.item_col)]
    if mapping.rating_col is not None:
        wanted.append(("--rating-col", mapping.rating_col))
    if mapping.time_col is not None and mapping.time_col != C.TIMESTAMP:
        # The default time column is optional; an explicitly named one must exist.
        wanted.append(("--time-col", mapping.time_col))
    for flag, name in wanted:
        if name not in frame.columns:
            found = ", ".join(repr(c) for c in frame.columns) or "none"
            raise DataError(
                f"column {name!r} ({flag}) not found in {origin}; columns found: {found}"
            )


def _normalise_time(frame: pl.DataFrame, name: str, unit: TimeUnit, origin: str) -> pl.Expr:
    """Epoch seconds / milliseconds, ISO-8601 strings and datetimes all become Datetime[ms, UTC]."""
    column = frame.get_column(name)
    dtype = column.dtype
    target = pl.Datetime("ms", "UTC")
    if isinstance(dtype, pl.Datetime):
        expr = pl.col(name)
        if dtype.time_zone is None:
            expr = expr.dt.replace_time_zone("UTC")
        return expr.dt.cast_time_unit("ms").dt.convert_time_zone("UTC").alias(C.TIMESTAMP)
    if dtype == pl.Date:
        return pl.col(name).cast(target).alias(C.TIMESTAMP)
    if dtype.is_numeric():
        if unit == "auto":
            largest = column.abs().max()
            unit = (
                "ms" if isinstance(largest, int | float) and largest > _EPOCH_MS_THRESHOLD else "s"
            )
        factor = 1000 if unit == "s" else 1
        if dtype.is_integer() and _exact_in_float(column, factor):
            # The float path below would round nothing: same values in one pass instead of four.
            return (pl.col(name).cast(pl.Int64) * factor).cast(target).alias(C.TIMESTAMP)
        return (
            (pl.col(name).cast(pl.Float64) * factor)
            .round(0)
            .cast(pl.Int64)
            .cast(target)
            .alias(C.TIMESTAMP)
        )
    if dtype == pl.String:
        parsed = column.str.to_datetime(strict=False, time_unit="ms")
        if parsed.dtype != pl.Datetime("ms", "UTC") and isinstance(parsed.dtype, pl.Datetime):
            parsed = (
                parsed.dt.replace_time_zone("UTC")
                if parsed.dtype.time_zone is None
                else parsed.dt.convert_time_zone("UTC")
            )
        bad = (parsed.is_null() & column.is_not_null()).arg_true()
        if len(bad) > 0:
            row = int(bad[0])
            raise DataError(
                f"unparsable timestamp in column {name!r} of {origin} at row {row + 1} "
                f"(value {column[row]!r}): expected epoch seconds/milliseconds or ISO-8601"
            )
        return pl.lit(parsed).alias(C.TIMESTAMP)
    raise DataError(
        f"time column {name!r} in {origin} has type {dtype}: expected epoch numbers, "
        "ISO-8601 strings or datetimes"
    )


def _exact_in_float(column: pl.Series, factor: int) -> bool:
    """Whether every value of an integer column, times ``factor``, is exact as a float64."""
    low, high = column.min(), column.max()
    if not (isinstance(low, int) and isinstance(high, int)):
        return True  # no values
    return max(abs(low), abs(high)) * factor <= _FLOAT_EXACT_LIMIT


def _first_error_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
