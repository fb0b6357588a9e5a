"""Negatives for the sampled protocol: items a user never interacted with, drawn with a seed.

Each user's excluded items are kept as one sorted array of keys ``row * (V + 1) + item`` (``row``
= the user's position in the evaluation), so membership is one ``searchsorted`` for all users at
once. Negatives are distinct within a user, never the user's own items (nor its held-out target,
which is one of them), and drawn uniformly or in proportion to item popularity.

Shape letters: N users evaluated, n negatives per user, D draws per user in one round.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import polars as pl

from recsys.data import PreparedDataset
from recsys.data import columns as C
from recsys.errors import ConfigError, DataError

NegativeSampling = Literal["uniform", "popularity"]
"""``uniform``: every non-interacted item equally likely (the SASRec paper); ``popularity``: in
proportion to the item's interaction count (``count`` in ``items.parquet``)."""
NEGATIVE_SAMPLINGS: tuple[str, ...] = get_args(NegativeSampling)

_ROUNDS_BEFORE_EXACT = 4
"""Vectorised rejection rounds before the few users still short are sampled one by one."""


def interacted_keys(dataset: PreparedDataset, user_indices: np.ndarray) -> np.ndarray:
    """Sorted keys ``row * (V + 1) + item`` of every item each user interacted with, any split.

    ``row`` is the user's position in ``user_indices``.
    """
    rows = pl.DataFrame(
        {C.USER_IDX: user_indices, "row": np.arange(len(user_indices), dtype=np.int64)},
        schema_overrides={C.USER_IDX: dataset.interactions.schema[C.USER_IDX]},
    )
    pairs = (
        dataset.interactions.select(C.USER_IDX, C.ITEM_IDX)
        .join(rows, on=C.USER_IDX, how="inner")
        .select(pl.col("row") * (dataset.num_items + 1) + pl.col(C.ITEM_IDX).cast(pl.Int64))
        .unique()
    )
    return np.sort(pairs.to_series().to_numpy().astype(np.int64))


def sampling_weights(dataset: PreparedDataset, sampling: NegativeSampling) -> np.ndarray | None:
    """Draw weights of items ``1..V`` (position 0 = item 1); ``None`` means uniform."""
    if sampling not in NEGATIVE_SAMPLINGS:
        raise ConfigError(
            f"--negative-sampling {sampling!r}: expected one of {', '.join(NEGATIVE_SAMPLINGS)}"
        )
    if sampling == "uniform":
        return None
    counts = dataset.items.table.sort(dataset.items.index_col).get_column(C.COUNT)
    return counts.to_numpy().astype(np.float64)


def sample_negatives(
    excluded_keys: np.ndarray,
    num_users: int,
    num_items: int,
    num_negatives: int,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """``num_negatives`` distinct items per user, none of them excluded for that user: [N, n].

    ``excluded_keys`` as made by ``interacted_keys``; ``weights`` (length ``num_items``, for
    items 1..V) makes draws proportional to them, ``None`` uniform. Deterministic given ``rng``'s
    state. A user with fewer than ``num_negatives`` items left to draw raises ``ConfigError``.

    >>> excluded = np.array([0 * 6 + 1, 0 * 6 + 2, 1 * 6 + 5])  # user 0: items 1, 2; user 1: 5
    >>> negatives = sample_negatives(excluded, 2, 5, 3, np.random.default_rng(0))
    >>> sorted(negatives[0].tolist()), 5 in negatives[1]
    ([3, 4, 5], False)
    """
    if num_negatives < 1:
        raise ConfigError(f"--negatives must be >= 1, got {num_negatives}")
    cdf = _cdf(weights, num_items)
    _check_feasible(excluded_keys, num_users, num_items, num_negatives, weights)
    negatives = np.zeros((num_users, num_negatives), dtype=np.int64)
    pending = np.arange(num_users, dtype=np.int64)
    draws = num_negatives + max(16, num_negatives // 2)
    for _ in range(_ROUNDS_BEFORE_EXACT):
        if pending.size == 0:
            return negatives
        candidates = _draw(rng, cdf, num_items, (pending.size, draws))  # [N', D]
        keys = pending[:, None] * (num_items + 1) + candidates  # [N', D]
        valid = ~_is_member(excluded_keys, keys) & _first_occurrence(candidates)  # [N', D]
        enough = valid.sum(axis=1) >= num_negatives  # [N']
        keep = valid[enough] & (np.cumsum(valid[enough], axis=1) <= num_negatives)
        negatives[pending[enough]] = candidates[enough][keep].reshape(-1, num_negatives)
        pending = pending[~enough]
        draws *= 2
    for row in pending:  # rare: users whose own items hold most of the draw weight
        negatives[row] = _exact_row(excluded_keys, int(row), num_items, num_negatives, rng, weights)
    return negatives


def _cdf(weights: np.ndarray | None, num_items: int) -> np.ndarray | None:
    if weights is None:
        return None
    if weights.shape != (num_items,) or np.any(weights < 0) or weights.sum() <= 0:
        raise DataError("negative-sampling weights must be non-negative, one per item, not all 0")
    cdf = np.cumsum(weights, dtype=np.float64)
    return cdf / cdf[-1]


def _draw(
    rng: np.random.Generator, cdf: np.ndarray | None, num_items: int, shape: tuple[int, int]
) -> np.ndarray:
    """Items in 1..V: uniform, or by inverse-CDF lookup (never an item of weight 0)."""
    if cdf is None:
        return rng.integers(1, num_items + 1, size=shape, dtype=np.int64)
    picks = np.searchsorted(cdf, rng.random(size=shape), side="right")
    return np.minimum(picks, num_items - 1).astype(np.int64) + 1


def _is_member(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if sorted_keys.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    positions = np.searchsorted(sorted_keys, keys).clip(max=sorted_keys.size - 1)
    return sorted_keys[positions] == keys


def _first_occurrence(candidates: np.ndarray) -> np.ndarray:
    """True where an item appears for the first time in its row (so negatives are distinct)."""
    order = np.argsort(candidates, axis=1, kind="stable")  # [N', D]
    ordered = np.take_along_axis(candidates, order, axis=1)
    repeated = np.zeros(candidates.shape, dtype=bool)
    repeated[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    first = np.empty_like(repeated)
    np.put_along_axis(first, order, ~repeated, axis=1)
    return first


def _row_items(excluded_keys: np.ndarray, row: int, num_items: int) -> np.ndarray:
    base = row * (num_items + 1)
    start, end = np.searchsorted(excluded_keys, [base, base + num_items + 1])
    return excluded_keys[start:end] - base


def _check_feasible(
    excluded_keys: np.ndarray,
    num_users: int,
    num_items: int,
    num_negatives: int,
    weights: np.ndarray | None,
) -> None:
    drawable = np.ones(num_items + 1, dtype=bool) if weights is None else np.r_[False, weights > 0]
    drawable[0] = False
    items = excluded_keys % (num_items + 1)
    rows = excluded_keys // (num_items + 1)
    blocked = np.bincount(rows[drawable[items]], minlength=num_users)  # [N]
    available = int(drawable.sum()) - blocked  # [N]
    if num_users and available.min() < num_negatives:
        raise ConfigError(
            f"--negatives {num_negatives} is too many: a user has only {available.min()} "
            "items it never interacted with to sample from (lower --negatives)"
        )


def _exact_row(
    excluded_keys: np.ndarray,
    row: int,
    num_items: int,
    num_negatives: int,
    rng: np.random.Generator,
    weights: np.ndarray | None,
) -> np.ndarray:
    allowed = np.ones(num_items + 1, dtype=bool)
    allowed[0] = False
    allowed[_row_items(excluded_keys, row, num_items)] = False
    if weights is not None:
        allowed[1:] &= weights > 0
    pool = np.flatnonzero(allowed)
    probs = None if weights is None else weights[pool - 1] / weights[pool - 1].sum()
    return rng.choice(pool, size=num_negatives, replace=False, p=probs).astype(np.int64)
