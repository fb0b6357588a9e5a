"""Full ranking excludes the history exactly as masking the scores would; sampled ranks among
the candidates only."""

from __future__ import annotations

import pytest
import torch

from recsys.evaluation import full_ranking, sampled_ranking, target_ranks

NEG_INF = float("-inf")


def _reference(
    scores: torch.Tensor, seen: torch.Tensor, targets: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The obvious implementation: set seen items to -inf, rank, take the top k."""
    masked = scores.scatter(1, seen, NEG_INF)
    top_scores, top_items = masked.topk(k, dim=1)
    return target_ranks(masked, targets), torch.where(torch.isneginf(top_scores), -1, top_items)


def test_history_items_are_excluded_by_hand() -> None:
    #                       pad   1    2    3    4    5
    scores = torch.tensor([[NEG_INF, 0.9, 0.8, 0.7, 0.6, 0.5]])
    seen = torch.tensor([[0, 1, 3, 1]])  # padding, and item 1 seen twice
    ranks, top = full_ranking(scores, seen, torch.tensor([4]), list_length=3)
    assert ranks.tolist() == [1]  # only item 2 is above item 4 once 1 and 3 are gone
    assert top.tolist() == [[2, 4, 5]]


def test_a_target_in_the_history_is_a_miss() -> None:
    scores = torch.tensor([[NEG_INF, 0.9, 0.8, 0.7]])
    ranks, _ = full_ranking(scores, torch.tensor([[2]]), torch.tensor([2]), list_length=2)
    assert ranks.item() >= 3


def test_short_catalogue_pads_the_list() -> None:
    scores = torch.tensor([[NEG_INF, 0.9, 0.8, 0.7]])
    _, top = full_ranking(scores, torch.tensor([[1, 2]]), torch.tensor([3]), list_length=3)
    assert top.tolist() == [[3, -1, -1]]


def test_matches_masking_on_random_batches() -> None:
    generator = torch.Generator().manual_seed(0)
    for num_items, width in ((30, 12), (200, 40), (5, 9)):
        scores = torch.rand(64, num_items + 1, generator=generator)  # distinct: no ties
        scores[:, 0] = NEG_INF
        seen = torch.randint(0, num_items + 1, (64, width), generator=generator)
        targets = torch.randint(1, num_items + 1, (64,), generator=generator)
        k = min(10, num_items)
        ranks, top = full_ranking(scores, seen, targets, list_length=k)
        expected_ranks, expected_top = _reference(scores, seen, targets, k)
        assert torch.equal(ranks, expected_ranks)
        assert torch.equal(top, expected_top)


def test_ties_count_against_the_target_as_in_target_ranks() -> None:
    scores = torch.tensor([[NEG_INF, 1.0, 1.0, 1.0, 1.0]])
    ranks, _ = full_ranking(scores, torch.tensor([[1]]), torch.tensor([2]), list_length=2)
    assert ranks.tolist() == [2]  # items 2, 3, 4 tie; item 1 is seen


def test_sampled_ranks_among_the_candidates_only() -> None:
    scores = torch.tensor([[NEG_INF, 0.1, 0.9, 0.8, 0.3, 0.2]])
    # Target 4 (0.3) against 1 (0.1) and 5 (0.2): first, although 2 and 3 score higher.
    assert sampled_ranking(scores, torch.tensor([[4, 1, 5]])).tolist() == [0]
    assert sampled_ranking(scores, torch.tensor([[4, 2, 5]])).tolist() == [1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_full_ranking_on_the_gpu_matches_the_cpu() -> None:
    generator = torch.Generator().manual_seed(1)
    scores = torch.rand(32, 101, generator=generator)
    scores[:, 0] = NEG_INF
    seen = torch.randint(0, 101, (32, 15), generator=generator)
    targets = torch.randint(1, 101, (32,), generator=generator)
    on_cpu = full_ranking(scores, seen, targets, list_length=10)
    on_gpu = full_ranking(scores.cuda(), seen.cuda(), targets.cuda(), list_length=10)
    assert all(torch.equal(a, b.cpu()) for a, b in zip(on_cpu, on_gpu, strict=True))
