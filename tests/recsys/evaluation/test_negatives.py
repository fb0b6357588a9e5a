"""Sampled-protocol negatives: never the user's items (nor the target), distinct, seeded."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.data import PreparedDataset
from recsys.data import columns as C
from recsys.errors import ConfigError
from recsys.evaluation import interacted_keys, sample_negatives
from recsys.evaluation.negatives import sampling_weights


def _user_items(dataset: PreparedDataset) -> dict[int, set[int]]:
    rows = dataset.interactions.group_by(C.USER_IDX).agg(pl.col(C.ITEM_IDX).unique())
    return {int(user): set(items) for user, items in rows.iter_rows()}


@pytest.mark.parametrize("sampling", ["uniform", "popularity"])
def test_negatives_avoid_every_item_the_user_touched(
    synthetic: PreparedDataset, sampling: str
) -> None:
    users = np.sort(synthetic.interactions.get_column(C.USER_IDX).unique().to_numpy())
    keys = interacted_keys(synthetic, users)
    negatives = sample_negatives(
        keys,
        len(users),
        synthetic.num_items,
        20,
        np.random.default_rng(0),
        sampling_weights(synthetic, sampling),  # type: ignore[arg-type]
    )
    assert negatives.shape == (len(users), 20)
    touched = _user_items(synthetic)  # all splits: includes every held-out target
    for row, user in enumerate(users):
        drawn = set(negatives[row].tolist())
        assert len(drawn) == 20, "negatives are distinct"
        assert not drawn & touched[int(user)]
        assert all(1 <= item <= synthetic.num_items for item in drawn)


def test_same_seed_same_negatives_other_seed_other_negatives() -> None:
    keys = np.array([1, 2, 3], dtype=np.int64)  # user 0 touched items 1, 2, 3
    draw = [sample_negatives(keys, 1, 500, 50, np.random.default_rng(s)) for s in (7, 7, 8)]
    assert np.array_equal(draw[0], draw[1])
    assert not np.array_equal(draw[0], draw[2])


def test_popularity_sampling_never_draws_weightless_items() -> None:
    weights = np.zeros(100)
    weights[:30] = np.arange(1, 31)  # items 1..30 have weight, 31..100 none
    negatives = sample_negatives(
        np.array([], dtype=np.int64), 50, 100, 25, np.random.default_rng(0), weights
    )
    assert negatives.max() <= 30


def test_a_user_with_few_items_left_gets_exactly_those() -> None:
    # user 0 touched 45 of 50 items: rejection rounds, then the exact fallback, find the 5 others.
    keys = np.arange(1, 46, dtype=np.int64)
    negatives = sample_negatives(keys, 1, 50, 5, np.random.default_rng(0))
    assert sorted(negatives[0].tolist()) == [46, 47, 48, 49, 50]


@pytest.mark.parametrize(
    ("count", "message"), [(6, "--negatives 6 is too many"), (0, "--negatives must be >= 1")]
)
def test_too_many_or_no_negatives_are_refused_naming_the_flag(count: int, message: str) -> None:
    keys = np.arange(1, 46, dtype=np.int64)
    with pytest.raises(ConfigError, match=message):
        sample_negatives(keys, 1, 50, count, np.random.default_rng(0))
