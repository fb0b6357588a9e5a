"""The two-pass top-k must select exactly what ``torch.topk`` selects, scripted or not."""

from __future__ import annotations

import pytest
import torch

from recsys.export.topk import BLOCK, blocked_topk, padded_width


def _check_exact(scores: torch.Tensor, k: int) -> None:
    values, indices = blocked_topk(scores, k, BLOCK)
    expected_values, _ = torch.topk(scores, k, dim=1)
    assert torch.equal(values, expected_values)
    assert torch.equal(scores.gather(1, indices), values)  # the indices point at those values
    assert all(len(set(row)) == k for row in indices.tolist())  # no column twice


@pytest.mark.parametrize("batch", [1, 3, 32])
@pytest.mark.parametrize("k", [1, 10, 20])
def test_blocked_topk_equals_topk_on_random_scores(batch: int, k: int) -> None:
    generator = torch.Generator().manual_seed(batch * 100 + k)
    scores = torch.randn(batch, 24 * BLOCK, generator=generator)
    _check_exact(scores, k)


def test_top_values_crowded_into_one_block_are_all_found() -> None:
    """The case a per-block shortcut gets wrong: all of the top k sit in the same block."""
    scores = torch.zeros(2, 16 * BLOCK)
    scores[0, 5 * BLOCK : 5 * BLOCK + 10] = torch.arange(10, 20).float()
    scores[1, -10:] = torch.arange(10).float() + 1
    values, indices = blocked_topk(scores, 10, BLOCK)
    assert values[0].tolist() == list(range(19, 9, -1))
    assert sorted(indices[0].tolist()) == list(range(5 * BLOCK, 5 * BLOCK + 10))
    assert sorted(indices[1].tolist()) == list(range(16 * BLOCK - 10, 16 * BLOCK))


def test_rows_with_fewer_finite_scores_than_k_return_them_first_then_minus_inf() -> None:
    scores = torch.full((1, 8 * BLOCK), float("-inf"))
    scores[0, [3, 700, 1000]] = torch.tensor([1.0, 3.0, 2.0])
    values, indices = blocked_topk(scores, 5, BLOCK)
    assert indices[0, :3].tolist() == [700, 1000, 3]
    assert values[0, :3].tolist() == [3.0, 2.0, 1.0]
    assert torch.isinf(values[0, 3:]).all()


def test_large_k_falls_back_to_topk() -> None:
    scores = torch.randn(2, 4 * BLOCK)
    _check_exact(scores, 3 * BLOCK)


def test_width_not_a_multiple_of_the_block_is_refused() -> None:
    with pytest.raises(RuntimeError, match=f"multiple of {BLOCK}"):
        blocked_topk(torch.zeros(1, BLOCK + 1), 1, BLOCK)


def test_padded_width() -> None:
    assert padded_width(1) == BLOCK
    assert padded_width(BLOCK) == BLOCK
    assert padded_width(23716) == 186 * BLOCK


def test_scripted_blocked_topk_matches_eager() -> None:
    scripted = torch.jit.script(blocked_topk)
    scores = torch.randn(4, 32 * BLOCK, generator=torch.Generator().manual_seed(0))
    assert torch.equal(scripted(scores, 10, BLOCK)[1], blocked_topk(scores, 10, BLOCK)[1])
