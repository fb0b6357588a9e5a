"""The two ranking protocols: where the held-out item ranks for one batch of users.

``full``: against every item in the catalogue, the user's history items excluded (they score
``-inf``; a held-out item that repeats a history item is therefore a miss). ``sampled`` (the
SASRec paper's): against a fixed set of negatives per user, items the user never interacted with.
Full-ranking and sampled numbers are not comparable: reports always say which protocol.

Shape letters: B batch, V catalogue size, S longest history in the batch, C candidates per user
(the target first, then the negatives), K longest list evaluated.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from recsys.evaluation.metrics import row_counts, target_ranks

EvaluationProtocol = Literal["full", "sampled"]
PROTOCOLS: tuple[str, ...] = get_args(EvaluationProtocol)


def full_ranking(
    scores: torch.Tensor, seen: torch.Tensor, targets: torch.Tensor, list_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ranks of the targets among all unseen items, and each user's top ``list_length`` items.

    scores [B, V + 1], seen [B, S] (0-padded history items), targets [B] -> ranks [B] and top
    items [B, K] (best first; -1 where fewer than K items could be recommended). The same ranks
    as ``target_ranks`` on the scores with the seen items set to ``-inf``, without copying the
    [B, V + 1] scores: seen items scoring at least the target are subtracted from the count.

    >>> scores = torch.tensor([[float("-inf"), 0.9, 0.8, 0.1, 0.5]])
    >>> ranks, top = full_ranking(scores, torch.tensor([[1, 1, 0]]), torch.tensor([4]), 2)
    >>> ranks.tolist(), top.tolist()
    ([1], [[2, 4]])
    """
    history = _distinct(seen)  # [B, S], sorted, 0 where empty or repeated
    ranks = _unseen_ranks(scores, history, targets)
    return ranks, _top_unseen(scores[:, 1:], history, list_length)


def full_ranks(scores: torch.Tensor, seen: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``full_ranking``'s ranks alone (what validation needs): [B, V + 1], [B, S], [B] -> [B].

    >>> scores = torch.tensor([[float("-inf"), 0.9, 0.8, 0.1, 0.5]])
    >>> full_ranks(scores, torch.tensor([[1, 0]]), torch.tensor([3])).tolist()
    [2]
    """
    return _unseen_ranks(scores, _distinct(seen), targets)


def _unseen_ranks(
    scores: torch.Tensor, history: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Ranks among unseen items; ``history`` as ``_distinct`` returns it. A target in the
    history (or scored -inf) is a miss: rank V + 1."""
    target_scores = scores.gather(1, targets.unsqueeze(1))  # [B, 1]
    at_least = row_counts(scores[:, 1:] >= target_scores)  # [B], the padding column left out
    seen_at_least = row_counts((scores.gather(1, history) >= target_scores) & (history > 0))
    ranks = at_least - seen_at_least - 1  # [B]
    miss = torch.isneginf(target_scores.squeeze(1)) | (history == targets.unsqueeze(1)).any(1)
    return torch.where(miss, torch.full_like(ranks, scores.size(1)), ranks)


def _distinct(seen: torch.Tensor) -> torch.Tensor:
    """Each row sorted, with repeats (and padding) replaced by 0: [B, S] -> [B, S]."""
    ordered = seen.sort(dim=1).values  # [B, S]
    repeated = torch.zeros_like(ordered, dtype=torch.bool)
    repeated[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    return ordered.masked_fill(repeated, 0).sort(dim=1).values


def _top_unseen(items: torch.Tensor, history: torch.Tensor, list_length: int) -> torch.Tensor:
    """The best ``list_length`` items per row that are not in ``history`` (sorted): [B, K].

    At most S of the best K + S items are seen, so the top K + S always hold the answer.
    """
    width = min(list_length + history.size(1), items.size(1))
    top_scores, top_items = items.topk(width, dim=1)  # [B, W]
    top_items = top_items + 1  # column j of ``items`` is item j + 1
    is_seen = torch.zeros_like(top_items, dtype=torch.bool)  # [B, W]
    if history.size(1):
        found = torch.searchsorted(history, top_items).clamp(max=history.size(1) - 1)  # [B, W]
        is_seen = history.gather(1, found) == top_items
    keep = ~is_seen & ~torch.isneginf(top_scores)  # [B, W]
    columns = torch.arange(width, device=items.device).expand_as(keep)  # [B, W]
    first_kept = torch.where(keep, columns, width).sort(dim=1).values[:, :list_length]  # [B, K']
    picked = top_items.gather(1, first_kept.clamp(max=width - 1))  # [B, K']
    out = torch.where(first_kept < width, picked, -1)  # [B, K'], K' = min(K, W)
    return torch.nn.functional.pad(out, (0, list_length - out.size(1)), value=-1)  # [B, K]


def sampled_ranking(scores: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Ranks of the targets (column 0 of ``candidates``) among the candidates: [B, V + 1],
    [B, C] -> [B]. Ties count against the target.

    >>> scores = torch.tensor([[float("-inf"), 0.9, 0.8, 0.1, 0.5]])
    >>> sampled_ranking(scores, torch.tensor([[4, 3, 2]])).tolist()
    [1]
    """
    return candidate_ranks(scores.gather(1, candidates))


def candidate_ranks(candidate_scores: torch.Tensor) -> torch.Tensor:
    """``sampled_ranking`` from the candidates' scores alone (column 0: the target): [B, C] ->
    [B]. Validation scores only the candidates, not the catalogue.

    >>> candidate_ranks(torch.tensor([[0.5, 0.1, 0.8]])).tolist()
    [1]
    """
    targets = torch.zeros(
        candidate_scores.size(0), dtype=torch.long, device=candidate_scores.device
    )
    return target_ranks(candidate_scores, targets)
