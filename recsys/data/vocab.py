"""Id vocabularies: external user/item ids <-> contiguous indices starting at 1 (0 = padding).

Indices follow the natural order of the external ids (numeric for integer ids, lexicographic
for strings), so the same set of ids always gets the same indices, and integer ids ``1..N``
without gaps map onto themselves.

Preparation turns ids into dense integer *codes* once, before cleaning (``encode_ids``): a code
is the id's rank among the sorted distinct ids, so every later step (duplicates, k-core, sorting,
counting) works on small integers, and the sorted distinct ids are the vocabulary for free. After
filtering, ``compact_codes`` renumbers the surviving codes to ``1..n`` without changing their
order, which is exactly the index a dense rank of the surviving ids would give.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from recsys.data import columns as C
from recsys.errors import DataError

Codes = npt.NDArray[np.int32]
"""One dense integer per event: an id's rank among the sorted distinct ids (0-based)."""

_DIRECT_ADDRESSING_SLACK = 2
"""Integer ids spanning at most this many values per event (plus 1024) are coded through a lookup
table over their range (about 5 bytes per value) instead of a sort and a hash join."""


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

    @classmethod
    def from_sorted_ids(
        cls, ids: pl.Series, index_col: str, id_col: str, **extra: pl.Series | npt.NDArray[np.int64]
    ) -> IdVocabulary:
        """The vocabulary of distinct ids already in index order; ``extra`` adds columns."""
        index = pl.Series(index_col, np.arange(1, len(ids) + 1, dtype=np.int32))
        extra_columns = [pl.Series(name, values) for name, values in extra.items()]
        return cls(pl.DataFrame([index, ids.alias(id_col), *extra_columns]), index_col, id_col)

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


def encode_ids(ids: pl.Series) -> tuple[pl.Series, Codes]:
    """The sorted distinct ids, and each row's code: the rank of its id among them (0-based).

    ``Int64`` ids (what the readers produce for integer ids) within a compact range, the common
    case of database keys, are coded through a presence table over the range, in linear time;
    anything else (strings, sparse integers, other types) sorts the distinct ids and joins them
    back. A null id, where there is one, is a value of its own that sorts first.

    >>> distinct, codes = encode_ids(pl.Series("user_id", [30, 10, 30, 20]))
    >>> distinct.to_list(), codes.tolist()
    ([10, 20, 30], [2, 0, 2, 1])
    """
    if ids.dtype == pl.Int64 and ids.null_count() == 0 and len(ids) > 0:
        values = ids.to_numpy()
        low, high = int(values.min()), int(values.max())
        if high - low < _DIRECT_ADDRESSING_SLACK * len(values) + 1024:
            offsets = values - low
            present = np.zeros(high - low + 1, dtype=bool)
            present[offsets] = True
            rank = np.cumsum(present, dtype=np.int32) - 1
            distinct = pl.Series(ids.name, np.flatnonzero(present) + low, dtype=ids.dtype)
            return distinct, rank[offsets]
    distinct = ids.unique().sort()
    coded = (
        ids.alias("id")
        .to_frame()
        .join(
            distinct.alias("id").to_frame().with_row_index("code"),
            on="id",
            how="left",
            nulls_equal=True,
            maintain_order="left",
        )
    )
    return distinct, coded.get_column("code").cast(pl.Int32).to_numpy()


def compact_codes(codes: Codes, distinct: pl.Series) -> tuple[Codes, pl.Series]:
    """Renumber the codes still in use to indices ``1..n``, in the same order; keep their ids.

    Filtering leaves gaps in the codes; a running count over the codes in use closes them without
    sorting anything, and because codes follow the sorted ids, so do the new indices.

    >>> indices, kept = compact_codes(np.array([2, 0, 2], dtype=np.int32), pl.Series([7, 8, 9]))
    >>> indices.tolist(), kept.to_list()
    ([2, 1, 2], [7, 9])
    """
    in_use = np.bincount(codes, minlength=len(distinct)) > 0
    index_of_code = np.cumsum(in_use, dtype=np.int32)
    return index_of_code[codes], distinct.filter(pl.Series(in_use))


def index_interactions(frame: pl.DataFrame) -> tuple[pl.DataFrame, IdVocabulary, IdVocabulary]:
    """Add ``user_idx`` and ``item_idx`` columns; return the frame and both vocabularies.

    An id's index is its code plus one, so the index column and the vocabulary come from the same
    pass. Null ids have no index: drop them first (``clean_interactions`` does).
    """
    columns: list[pl.Series] = []
    vocabularies: list[IdVocabulary] = []
    for id_col, index_col in ((C.USER_ID, C.USER_IDX), (C.ITEM_ID, C.ITEM_IDX)):
        ids = frame.get_column(id_col)
        if ids.null_count():
            raise DataError(f"{id_col} has {ids.null_count()} nulls: drop them before indexing")
        distinct, codes = encode_ids(ids)
        columns.append(pl.Series(index_col, codes + 1, dtype=pl.Int32))
        vocabularies.append(IdVocabulary.from_sorted_ids(distinct, index_col, id_col))
    return frame.with_columns(columns), vocabularies[0], vocabularies[1]
