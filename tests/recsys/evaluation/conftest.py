"""Shared fixtures of the evaluation tests: a hand-made log and a small synthetic dataset."""

from __future__ import annotations

import polars as pl
import pytest

from recsys.data import CleaningConfig, PrepareConfig, PreparedDataset, prepare_dataset
from recsys.data.synthetic import SynthConfig, generate_log


def log_from_sequences(sequences: dict[int, list[int]]) -> pl.DataFrame:
    """A log whose events per user follow the given item order (timestamps increase)."""
    users: list[int] = []
    items: list[int] = []
    times: list[int] = []
    for user, sequence in sequences.items():
        for item in sequence:
            users.append(user)
            items.append(item)
            times.append(len(times))
    return pl.DataFrame({"user_id": users, "item_id": items, "timestamp": times})


HAND_MADE = {
    # leave-one-out: the last item is test, the one before validation, the rest training.
    1: [1, 2, 3, 5, 6],
    2: [1, 4, 2, 6, 5],
    3: [1, 3, 2, 7, 1],
    4: [2, 3, 8, 8],
}
"""Training transitions: 1->2, 1->3, 1->4, 2->3 (twice), 3->2, 4->2. Training counts: item 1: 3,
item 2: 4, item 3: 3, item 4: 1, items 5-8: 0."""


@pytest.fixture
def hand_made() -> PreparedDataset:
    """Four users over items 1..8 with known training transitions and popularity."""
    return prepare_dataset(log_from_sequences(HAND_MADE))


@pytest.fixture(scope="session")
def synthetic() -> PreparedDataset:
    """300 users over 80 items with sequential structure, at least 3 events per user."""
    log = generate_log(SynthConfig(n_users=300, n_items=80, n_events=6_000, seed=5))
    return prepare_dataset(log, PrepareConfig(cleaning=CleaningConfig(min_user_interactions=3)))
