"""Every metric against values computed by hand, and the rank conventions they rely on."""

from __future__ import annotations

import math

import pytest
import torch

from recsys.evaluation import (
    RANK_METRICS,
    average_popularity_at_k,
    catalogue_coverage,
    hit_rate_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    target_ranks,
)
from recsys.evaluation.metrics import row_counts

RANKS = torch.tensor([0, 1, 4, 9, 10, 2000])


def test_target_ranks_count_ties_against_the_target_and_minus_inf_is_a_miss() -> None:
    scores = torch.tensor([[0.5, 0.5, 0.1], [0.2, float("-inf"), 0.3], [1.0, 2.0, 3.0]])
    ranks = target_ranks(scores, torch.tensor([0, 1, 2]))
    assert ranks.tolist() == [1, 3, 0]


def test_row_counts_match_torch_sum() -> None:
    mask = torch.rand(7, 33) > 0.4
    assert torch.equal(row_counts(mask), mask.sum(dim=1))
    assert torch.equal(row_counts(mask[:, ::2]), mask[:, ::2].sum(dim=1))  # strided views too


def test_hit_rate_is_recall_for_one_held_out_item() -> None:
    assert hit_rate_at_k(RANKS, 10).tolist() == [1, 1, 1, 1, 0, 0]
    assert hit_rate_at_k(RANKS, 1).tolist() == [1, 0, 0, 0, 0, 0]


def test_ndcg_by_hand() -> None:
    expected = [1.0, 1 / math.log2(3), 1 / math.log2(6), 1 / math.log2(11), 0.0, 0.0]
    assert ndcg_at_k(RANKS, 10).tolist() == pytest.approx(expected)


def test_mrr_by_hand() -> None:
    assert mrr_at_k(RANKS, 10).tolist() == pytest.approx([1.0, 0.5, 0.2, 0.1, 0.0, 0.0])
    assert mrr_at_k(RANKS, 2).tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0, 0.0, 0.0])


def test_precision_by_hand() -> None:
    assert precision_at_k(RANKS, 5).tolist() == pytest.approx([0.2, 0.2, 0.2, 0, 0, 0])


def test_rank_metric_registry_names() -> None:
    assert set(RANK_METRICS) == {"hr", "ndcg", "mrr", "precision"}


def test_average_popularity_by_hand() -> None:
    popularity = torch.tensor([0.0, 100.0, 10.0, 1.0, 0.0])
    top = torch.tensor([[1, 2, 3], [4, 3, 2], [-1, -1, -1]])
    assert average_popularity_at_k(top, popularity, 1).tolist() == [100.0, 0.0, 0.0]
    assert average_popularity_at_k(top, popularity, 3).tolist() == pytest.approx([37.0, 11 / 3, 0])


def test_catalogue_coverage_by_hand() -> None:
    lists = torch.tensor([[1, 2, -1], [2, 3, 0], [9, 3, 1]])  # -1, 0 and 9 are not items
    assert catalogue_coverage(lists, num_items=8) == 3 / 8
    assert catalogue_coverage(lists[:, :1], num_items=8) == 2 / 8
