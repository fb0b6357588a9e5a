"""Sequences and batches: right alignment, trimming, held-out targets, the bucketing sampler."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.data import (
    LengthBucketBatchSampler,
    evaluation_batch,
    held_out_targets,
    prepare_dataset,
    right_aligned,
    right_aligned_rows,
    training_batch,
    training_sequences,
)
from recsys.data.sequences import FlatSequences


@pytest.fixture
def log() -> pl.DataFrame:
    # user 1: items 1..6 in order; user 2: items 7, 8, 9.
    return pl.DataFrame(
        {
            "user_id": [1] * 6 + [2] * 3,
            "item_id": [1, 2, 3, 4, 5, 6, 7, 8, 9],
            "timestamp": list(range(9)),
        }
    )


def test_training_windows_are_right_aligned_and_trimmed(log: pl.DataFrame) -> None:
    sequences = training_sequences(prepare_dataset(log))  # user 1: 1..4, user 2: 7
    inputs, targets = training_batch(sequences, [0, 1], max_len=10)
    assert inputs.tolist() == [[1, 2, 3], [0, 0, 0]]
    assert targets.tolist() == [[2, 3, 4], [0, 0, 0]]


def test_long_histories_keep_their_latest_items(log: pl.DataFrame) -> None:
    sequences = training_sequences(prepare_dataset(log))
    inputs, targets = training_batch(sequences, [0], max_len=2)
    assert inputs.tolist() == [[2, 3]]
    assert targets.tolist() == [[3, 4]]


def test_validation_history_is_training_and_test_adds_validation(log: pl.DataFrame) -> None:
    dataset = prepare_dataset(log)
    validation = held_out_targets(dataset, "validation")
    test = held_out_targets(dataset, "test")
    assert validation.targets.tolist() == [5, 8]
    assert test.targets.tolist() == [6, 9]
    inputs, targets, seen = evaluation_batch(test, [0, 1], max_len=3)
    assert inputs.tolist() == [[3, 4, 5], [0, 7, 8]]
    assert seen.tolist() == [[1, 2, 3, 4, 5], [0, 0, 0, 7, 8]]  # the full history, not the window
    assert targets.tolist() == [6, 9]


def test_sampler_covers_every_row_once_with_similar_lengths() -> None:
    lengths = np.array([1, 50, 2, 49, 3, 48, 4, 47])
    sampler = LengthBucketBatchSampler(lengths, batch_size=2, seed=0)
    batches = list(sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(8))
    for batch in batches:
        assert abs(int(lengths[batch[0]]) - int(lengths[batch[-1]])) <= 1
    assert len(sampler) == len(batches) == 4


def test_sampler_is_deterministic_per_epoch_and_changes_between_epochs() -> None:
    lengths = np.arange(100) % 7
    first, second = (
        LengthBucketBatchSampler(lengths, 8, seed=1),
        LengthBucketBatchSampler(lengths, 8, seed=1),
    )
    epoch_zero = list(first)
    assert epoch_zero == list(second)
    assert list(first) != epoch_zero  # the next epoch is shuffled differently
    second.set_epoch(1)
    first.set_epoch(1)
    assert list(first) == list(second)


def test_sampler_shards_disjointly_and_evenly_across_ranks() -> None:
    lengths = np.arange(21)
    shards = [
        list(LengthBucketBatchSampler(lengths, 2, seed=0, rank=r, world_size=2)) for r in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 5  # equal counts: no rank waits on the other
    rows = [i for shard in shards for batch in shard for i in batch]
    assert len(rows) == len(set(rows))


def test_rows_are_right_aligned_keeping_their_newest_items() -> None:
    assert right_aligned_rows([[1, 2], [3], []], 3) == [[0, 1, 2], [0, 0, 3], [0, 0, 0]]
    assert right_aligned_rows([[1, 2, 3, 4, 5]], 2) == [[4, 5]]
    assert right_aligned_rows([[1, 2], []], 0) == [[], []]


def test_the_tensor_and_list_layouts_agree() -> None:
    rows = [[1, 2, 3, 4, 5], [6], [], [7, 8]]
    for width in (0, 1, 3, 6):
        assert right_aligned(rows, width).tolist() == right_aligned_rows(rows, width)


def test_selected_rows_keep_their_items_in_the_order_asked() -> None:
    flat = FlatSequences(np.array([1, 2, 3, 4, 5, 6]), np.array([0, 2, 2, 5, 6]))
    picked = flat.select(np.array([3, 0, 2, 1]))
    assert [picked.row(i).tolist() for i in range(len(picked))] == [[6], [1, 2], [3, 4, 5], []]
    assert len(flat.select(np.array([], dtype=np.int64))) == 0
