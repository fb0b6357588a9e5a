"""Ranking metrics for one held-out item per user, computed from the rank of that item.

A rank is 0-based: 0 means the held-out item was scored highest. Items scored ``-inf`` (excluded)
can never be hit.
"""

from __future__ import annotations

import torch


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's target among that row's scores: [B, V] x [B] -> [B].

    Ties count against the target (pessimistic), so a constant scorer never looks good; a target
    scored ``-inf`` gets rank V (a miss at every K).

    >>> target_ranks(torch.tensor([[0.1, 0.9, 0.5], [3.0, 1.0, 2.0]]), torch.tensor([2, 0]))
    tensor([1, 0])
    """
    target_scores = scores.gather(1, targets.unsqueeze(1))  # [B, 1]
    ranks = (scores >= target_scores).sum(dim=1) - 1  # [B]
    return torch.where(
        torch.isneginf(target_scores.squeeze(1)), torch.full_like(ranks, scores.size(1)), ranks
    )


def hit_rate_at_k(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """1 where the target is in the top k, per user.

    >>> hit_rate_at_k(torch.tensor([0, 3, 12]), 10)
    tensor([1., 1., 0.])
    """
    return (ranks < k).float()


def ndcg_at_k(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """1 / log2(rank + 2) where the target is in the top k, else 0, per user.

    >>> ndcg_at_k(torch.tensor([0, 1, 12]), 10)
    tensor([1.0000, 0.6309, 0.0000])
    """
    gains = 1.0 / torch.log2(ranks.float() + 2.0)
    return torch.where(ranks < k, gains, torch.zeros_like(gains))
