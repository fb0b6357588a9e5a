"""Id vocabularies: contiguous 1-based indices, round trips, unknown ids."""

from __future__ import annotations

import polars as pl
import pytest

from recsys.data import IdVocabulary, prepare_dataset
from recsys.data import columns as C
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


def test_unknown_ids_and_out_of_range_indices_are_errors(small_log: pl.DataFrame) -> None:
    items = prepare_dataset(small_log).items
    with pytest.raises(DataError, match="unknown item_id: 'nope'"):
        items.encode(["x", "nope"])
    with pytest.raises(DataError, match=r"item_idx 0 is outside 1..4"):
        items.decode([0])


def test_a_broken_table_is_refused() -> None:
    table = pl.DataFrame({C.ITEM_IDX: [1, 3], C.ITEM_ID: ["a", "b"]})
    with pytest.raises(DataError, match="not the contiguous range"):
        IdVocabulary(table, C.ITEM_IDX, C.ITEM_ID)
