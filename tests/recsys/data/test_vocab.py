"""Id vocabularies: contiguous 1-based indices, round trips, unknown ids; the id codes as dense
ranks, and compacting them."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data import IdVocabulary, prepare_dataset
from recsys.data import columns as C
from recsys.data.vocab import compact_codes, encode_ids
from recsys.errors import DataError


def test_indices_are_contiguous_from_one_and_round_trip(small_log: pl.DataFrame) -> None:
    dataset = prepare_dataset(small_log)
    items = dataset.items
    assert items.table.get_column(C.ITEM_IDX).to_list() == [1, 2, 3, 4]
    assert items.decode(items.encode(["z", "w", "x"])) == ["z", "w", "x"]
    assert items.encode(["w", "x", "y", "z"]) == [1, 2, 3, 4]  # natural order of the ids
    indices = dataset.interactions.get_column(C.ITEM_IDX)
    assert indices.min() == 1 and indices.max() == items.size  # 0 stays the padding index


def test_gapless_integer_ids_map_onto_themselves() -> None:
    log = pl.DataFrame({"user_id": [2, 1, 3, 1], "item_id": [3, 1, 2, 2]})
    dataset = prepare_dataset(log)
    assert dataset.users.encode([1, 2, 3]) == [1, 2, 3]
    assert dataset.items.encode([1, 2, 3]) == [1, 2, 3]


def test_unknown_ids_are_errors(small_log: pl.DataFrame) -> None:
    items = prepare_dataset(small_log).items
    with pytest.raises(DataError, match="unknown item_id: 'nope'"):
        items.encode(["x", "nope"])


def test_out_of_range_indices_are_errors(small_log: pl.DataFrame) -> None:
    items = prepare_dataset(small_log).items
    with pytest.raises(DataError, match=r"item_idx 0 is outside 1..4"):
        items.decode([0])


def test_a_broken_table_is_refused() -> None:
    table = pl.DataFrame({C.ITEM_IDX: [1, 3], C.ITEM_ID: ["a", "b"]})
    with pytest.raises(DataError, match="not the contiguous range"):
        IdVocabulary(table, C.ITEM_IDX, C.ITEM_ID)


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
