"""Readers: every format, column mapping, time normalisation and the errors users hit."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from recsys.data import ColumnMapping, detect_format, read_interactions
from recsys.data import columns as C
from recsys.errors import DataError

EXPECTED_USERS = [1, 1, 2]
EXPECTED_ITEMS = [10, 11, 10]
EXPECTED_TIMES = [
    datetime(2024, 1, 1, tzinfo=UTC),
    datetime(2024, 1, 2, tzinfo=UTC),
    datetime(2024, 1, 3, tzinfo=UTC),
]
EPOCHS = [int(t.timestamp()) for t in EXPECTED_TIMES]


def _assert_canonical(frame: pl.DataFrame, with_time: bool = True) -> None:
    assert frame.get_column(C.USER_ID).to_list() == EXPECTED_USERS
    assert frame.get_column(C.ITEM_ID).to_list() == EXPECTED_ITEMS
    assert frame.get_column(C.EVENT_ORDER).to_list() == [0, 1, 2]
    assert frame.schema[C.TIMESTAMP] == pl.Datetime("ms", "UTC")
    if with_time:
        assert frame.get_column(C.TIMESTAMP).to_list() == EXPECTED_TIMES


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_default_columns(tmp_path: Path) -> None:
    lines = ["user_id,item_id,timestamp"] + [
        f"{u},{i},{t}" for u, i, t in zip(EXPECTED_USERS, EXPECTED_ITEMS, EPOCHS, strict=True)
    ]
    path = _write(tmp_path / "log.csv", "\n".join(lines) + "\n")
    assert detect_format(path) == "csv"
    _assert_canonical(read_interactions(path))


def test_tsv_with_mapped_columns_and_iso_times(tmp_path: Path) -> None:
    lines = ["who\twhat\twhen"] + [
        f"{u}\t{i}\t{t.isoformat()}"
        for u, i, t in zip(EXPECTED_USERS, EXPECTED_ITEMS, EXPECTED_TIMES, strict=True)
    ]
    path = _write(tmp_path / "log.tsv", "\n".join(lines) + "\n")
    mapping = ColumnMapping(user_col="who", item_col="what", time_col="when")
    _assert_canonical(read_interactions(path, mapping=mapping))


def test_parquet_with_epoch_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pl.DataFrame(
        {"user_id": EXPECTED_USERS, "item_id": EXPECTED_ITEMS, "ts": [e * 1000 for e in EPOCHS]}
    ).write_parquet(path)
    _assert_canonical(read_interactions(path, mapping=ColumnMapping(time_col="ts")))


def test_jsonl(tmp_path: Path) -> None:
    lines = [
        f'{{"user_id": {u}, "item_id": {i}, "timestamp": {t}}}'
        for u, i, t in zip(EXPECTED_USERS, EXPECTED_ITEMS, EPOCHS, strict=True)
    ]
    path = _write(tmp_path / "log.jsonl", "\n".join(lines) + "\n")
    _assert_canonical(read_interactions(path))


def test_movielens_ratings_dat(tmp_path: Path) -> None:
    lines = [
        f"{u}::{i}::4::{t}" for u, i, t in zip(EXPECTED_USERS, EXPECTED_ITEMS, EPOCHS, strict=True)
    ]
    path = _write(tmp_path / "ratings.dat", "\n".join(lines) + "\n")
    assert detect_format(path) == "movielens"
    frame = read_interactions(path)
    _assert_canonical(frame)
    assert frame.get_column(C.RATING).to_list() == [4.0, 4.0, 4.0]


def test_movielens_100k_u_data(tmp_path: Path) -> None:
    lines = [
        f"{u}\t{i}\t3\t{t}" for u, i, t in zip(EXPECTED_USERS, EXPECTED_ITEMS, EPOCHS, strict=True)
    ]
    path = _write(tmp_path / "u.data", "\n".join(lines) + "\n")
    assert detect_format(path) == "movielens-100k"
    _assert_canonical(read_interactions(path))


def test_user_item_text_keeps_line_order(tmp_path: Path) -> None:
    path = _write(tmp_path / "games.txt", "1 10\n1 11\n2 10\n")
    assert detect_format(path) == "user-item"
    frame = read_interactions(path)
    _assert_canonical(frame, with_time=False)
    assert frame.get_column(C.TIMESTAMP).null_count() == 3


def test_pandas_and_polars_frames_with_string_ids() -> None:
    data = {"u": ["a", "a", "b"], "i": ["p", "q", "p"], "t": EPOCHS}
    mapping = ColumnMapping(user_col="u", item_col="i", time_col="t")
    from_pandas = read_interactions(pd.DataFrame(data), mapping=mapping)
    from_polars = read_interactions(pl.DataFrame(data), mapping=mapping)
    assert from_pandas.equals(from_polars)
    assert from_polars.get_column(C.USER_ID).to_list() == ["a", "a", "b"]
    assert from_polars.get_column(C.TIMESTAMP).to_list() == EXPECTED_TIMES


def test_epoch_seconds_and_milliseconds_agree() -> None:
    seconds = pl.DataFrame({"user_id": [1], "item_id": [1], "timestamp": [EPOCHS[0]]})
    millis = seconds.with_columns(pl.col("timestamp") * 1000)
    assert read_interactions(seconds).equals(read_interactions(millis))


def test_explicit_time_unit_overrides_detection() -> None:
    frame = pl.DataFrame({"user_id": [1], "item_id": [1], "timestamp": [EPOCHS[0] * 1000]})
    parsed = read_interactions(frame, mapping=ColumnMapping(time_unit="ms"))
    assert parsed.get_column(C.TIMESTAMP).to_list() == EXPECTED_TIMES[:1]


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="input file not found: .*nope.csv"):
        read_interactions(tmp_path / "nope.csv")


def test_undetectable_format_asks_for_format(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.bin", "one two three four five\n")
    with pytest.raises(DataError, match="cannot detect the format.*pass --format"):
        read_interactions(path)


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.csv", "user_id,item_id\n1,2\n")
    with pytest.raises(DataError, match="unknown format 'xml'"):
        read_interactions(path, "xml")  # type: ignore[arg-type]


def test_missing_column_names_flag_and_lists_found(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.csv", "uid,item_id\n1,2\n")
    with pytest.raises(
        DataError, match=r"column 'user_id' \(--user-col\) not found.*'uid', 'item_id'"
    ):
        read_interactions(path)


def test_explicit_time_column_must_exist(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.csv", "user_id,item_id\n1,2\n")
    with pytest.raises(DataError, match=r"'when' \(--time-col\) not found"):
        read_interactions(path, mapping=ColumnMapping(time_col="when"))


def test_unparsable_timestamp_names_the_row(tmp_path: Path) -> None:
    text = "user_id,item_id,timestamp\n1,2,2024-01-01T00:00:00\n1,3,2024-01-02T00:00:00\n1,4,soon\n"
    path = _write(tmp_path / "log.csv", text)
    with pytest.raises(DataError, match=r"unparsable timestamp .* row 3 \(value 'soon'\)"):
        read_interactions(path)


def test_float_ids_are_refused() -> None:
    frame = pl.DataFrame({"user_id": [1.5], "item_id": [1]})
    with pytest.raises(DataError, match="ids must be integers or strings"):
        read_interactions(frame)


def test_mapping_with_headerless_format_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "games.txt", "1 10\n")
    with pytest.raises(DataError, match="has fixed columns"):
        read_interactions(path, mapping=ColumnMapping(user_col="who"))


def test_wrong_movielens_shape_is_explained(tmp_path: Path) -> None:
    path = _write(tmp_path / "ratings.dat", "1::2\n3::4\n")
    with pytest.raises(DataError, match="not a MovieLens ratings.dat"):
        read_interactions(path)
