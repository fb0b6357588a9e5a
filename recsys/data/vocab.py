"""Id vocabularies: external user/item ids <-> contiguous indices starting at 1 (0 = padding).

Indices follow the natural order of the external ids (numeric for integer ids, lexicographic
for strings), so the same set of ids always gets the same indices, and integer ids ``1..N``
without gaps map onto themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import polars as pl

from recsys.data import columns as C
from recsys.errors import DataError


@dataclass(frozen=True)
class IdVocabulary:
    """A bijection between external ids and indices ``1..size``.

    ``table`` has two columns: the index column (``user_idx``/``item_idx``, Int32, sorted, 1..size)
    and the external id column (``user_id``/``item_id``, Int64 or String).
    """

    table: pl.DataFrame
    index_col: str
    id_col: str

    def __post_init__(self) -> None:
        expected = pl.int_range(1, self.table.height + 1, eager=True)
        indices = self.table.get_column(self.index_col)
        if not indices.cast(pl.Int64).equals(expected.cast(pl.Int64), check_names=False):
            raise DataError(f"vocabulary {self.index_col!r} is not the contiguous range 1..n")
        if self.table.get_column(self.id_col).n_unique() != self.table.height:
            raise DataError(f"vocabulary {self.id_col!r} has duplicate ids")

    @property
    def size(self) -> int:
        """Number of ids, not counting the padding index."""
        return self.table.height

    @property
    def id_dtype(self) -> pl.DataType:
        return self.table.schema[self.id_col]

    def encode(self, ids: Iterable[object]) -> list[int]:
        """External ids -> indices; an unknown id raises ``DataError`` naming it."""
        wanted = pl.DataFrame({self.id_col: list(ids)}, schema={self.id_col: self.id_dtype})
        joined = wanted.join(self.table, on=self.id_col, how="left", maintain_order="left")
        missing = joined.filter(pl.col(self.index_col).is_null())
        if missing.height:
            raise DataError(
                f"unknown {self.id_col}: {missing.get_column(self.id_col)[0]!r}"
                + (f" (and {missing.height - 1} more)" if missing.height > 1 else "")
            )
        return [int(i) for i in joined.get_column(self.index_col)]

    def decode(self, indices: Sequence[int]) -> list[object]:
        """Indices -> external ids; padding or out-of-range indices raise ``DataError``."""
        ids = self.table.get_column(self.id_col)
        out: list[object] = []
        for index in indices:
            if not 1 <= index <= self.size:
                raise DataError(f"{self.index_col} {index} is outside 1..{self.size}")
            out.append(ids[index - 1])
        return out


def index_interactions(frame: pl.DataFrame) -> tuple[pl.DataFrame, IdVocabulary, IdVocabulary]:
    """Add ``user_idx`` and ``item_idx`` columns; return the frame and both vocabularies.

    A dense rank over the sorted ids is exactly the vocabulary index, without a join.
    """
    indexed = frame.with_columns(
        pl.col(C.USER_ID).rank("dense").cast(pl.Int32).alias(C.USER_IDX),
        pl.col(C.ITEM_ID).rank("dense").cast(pl.Int32).alias(C.ITEM_IDX),
    )
    users = IdVocabulary(
        indexed.select(C.USER_IDX, C.USER_ID).unique(C.USER_IDX).sort(C.USER_IDX),
        C.USER_IDX,
        C.USER_ID,
    )
    items = IdVocabulary(
        indexed.select(C.ITEM_IDX, C.ITEM_ID).unique(C.ITEM_IDX).sort(C.ITEM_IDX),
        C.ITEM_IDX,
        C.ITEM_ID,
    )
    return indexed, users, items
