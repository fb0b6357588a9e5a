"""Ranking metrics for one held-out item per user, computed from the rank of that item, and
beyond-accuracy metrics of the recommended lists (catalogue coverage, average popularity).

A rank is 0-based: 0 means the held-out item was scored highest. Items scored ``-inf`` (excluded)
can never be hit. With one held-out item per user, HR@K is also Recall@K.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's target among that row's scores: [B, V] x [B] -> [B].

    Ties count against the target (pessimistic), so a constant scorer never looks good; a target
    scored ``-inf`` gets rank V (a miss at every K).

    >>> target_ranks(torch.tensor([[0.1, 0.9, 0.5], [3.0, 1.0, 2.0]]), torch.tensor([2, 0]))
    tensor([1, 0])
    """
    target_scores = scores.gather(1, targets.unsqueeze(1))  # [B, 1]
    ranks = row_counts(scores >= target_scores) - 1  # [B]
    return torch.where(
        torch.isneginf(target_scores.squeeze(1)), torch.full_like(ranks, scores.size(1)), ranks
    )


def row_counts(mask: torch.Tensor) -> torch.Tensor:
    """Number of ``True`` per row of a boolean matrix: [B, V] -> [B] (int64).

    On the CPU this goes through NumPy, whose boolean sum is several times faster than
    torch's; the result is the same.

    >>> row_counts(torch.tensor([[True, False, True], [False, False, False]]))
    tensor([2, 0])
    """
    if mask.device.type == "cpu":
        return torch.from_numpy(mask.numpy().sum(axis=1, dtype=np.int64))
    return mask.sum(dim=1)


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


def mrr_at_k(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """1 / (rank + 1) where the target is in the top k, else 0, per user.

    >>> mrr_at_k(torch.tensor([0, 3, 12]), 10)
    tensor([1.0000, 0.2500, 0.0000])
    """
    reciprocal = 1.0 / (ranks.float() + 1.0)
    return torch.where(ranks < k, reciprocal, torch.zeros_like(reciprocal))


def precision_at_k(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """Share of the top k that is relevant: 1 / k on a hit (one held-out item), else 0.

    >>> precision_at_k(torch.tensor([0, 3, 12]), 4)
    tensor([0.2500, 0.2500, 0.0000])
    """
    return hit_rate_at_k(ranks, k) / k


def average_popularity_at_k(
    top_items: torch.Tensor, popularity: torch.Tensor, k: int
) -> torch.Tensor:
    """Mean popularity of each user's top k recommendations: [B, >=k] -> [B].

    ``top_items`` are item indices, best first; entries < 0 mark empty slots (fewer than k
    rankable items) and are left out of the mean (a user with none gets 0).

    >>> popularity = torch.tensor([0.0, 10.0, 4.0, 1.0])  # index 0 is padding
    >>> average_popularity_at_k(torch.tensor([[1, 2, 3], [3, 2, -1]]), popularity, 2).tolist()
    [7.0, 2.5]
    """
    top = top_items[:, :k]  # [B, k]
    filled = top >= 0  # [B, k]
    values = popularity[top.clamp(min=0)].to(torch.float64) * filled  # [B, k]
    return values.sum(dim=1) / filled.sum(dim=1).clamp(min=1)


def catalogue_coverage(recommended: torch.Tensor, num_items: int) -> float:
    """Share of the catalogue (items 1..num_items) that appears in at least one list.

    ``recommended`` holds item indices of any shape; entries outside 1..num_items are ignored.

    >>> catalogue_coverage(torch.tensor([[1, 2], [2, 3]]), num_items=6)
    0.5
    """
    items = recommended.flatten()
    present = torch.zeros(num_items + 1, dtype=torch.bool, device=items.device)  # [V + 1]
    present[items[(items >= 1) & (items <= num_items)]] = True
    return float(present.sum()) / num_items


RANK_METRICS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "hr": hit_rate_at_k,
    "ndcg": ndcg_at_k,
    "mrr": mrr_at_k,
    "precision": precision_at_k,
}
"""Per-user metrics computed from the target's rank, by the prefix of their ``name@K`` key."""
