"""Most-popular and Markov baselines on a hand-made log."""

from __future__ import annotations

import pytest
import torch

from recsys.data import PreparedDataset
from recsys.errors import ConfigError
from recsys.evaluation import (
    Scorer,
    baseline_scorer,
    evaluate_scorer,
    markov_scorer,
    most_popular_scorer,
    training_popularity,
)


def _order(scores: torch.Tensor) -> list[int]:
    """Items by descending score (stable, so equal scores keep index order)."""
    return torch.argsort(scores, descending=True, stable=True).tolist()


def test_training_popularity_counts_the_training_split_only(hand_made: PreparedDataset) -> None:
    assert training_popularity(hand_made).tolist() == [0, 3, 4, 3, 1, 0, 0, 0, 0]


def test_most_popular_gives_everyone_the_same_scores(hand_made: PreparedDataset) -> None:
    scorer = most_popular_scorer(hand_made)
    scores = scorer(torch.tensor([[1], [8]]))
    assert scores.shape == (2, 9)
    assert torch.isneginf(scores[:, 0]).all()
    assert torch.equal(scores[0], scores[1])
    assert _order(scores[0])[:4] == [2, 1, 3, 4]


def test_markov_ranks_by_last_item_transitions_then_popularity(hand_made: PreparedDataset) -> None:
    scorer = markov_scorer(hand_made)
    scores = scorer(torch.tensor([[0, 1], [3, 2], [0, 8]]))  # only the last column matters
    assert torch.isneginf(scores[:, 0]).all()
    # From 1: 2, 3 and 4 followed once each -> tie broken by popularity (4 > 3 > 1), then 1.
    assert _order(scores[0])[:4] == [2, 3, 4, 1]
    # From 2: 3 followed twice, then the rest by popularity.
    assert _order(scores[1])[:4] == [3, 2, 1, 4]
    # Item 8 never occurs in training: pure popularity.
    assert _order(scores[2])[:4] == [2, 1, 3, 4]


def test_markov_scores_are_exact_integers(hand_made: PreparedDataset) -> None:
    scores = markov_scorer(hand_made)(torch.tensor([[2]]))[0]
    # count * (max popularity + 1) + popularity, with max popularity 4.
    assert scores[3].item() == 2 * 5 + 3
    assert scores[4].item() == 0 * 5 + 1


def test_markov_on_the_test_split_by_hand(hand_made: PreparedDataset) -> None:
    result = evaluate_scorer(hand_made, markov_scorer(hand_made), split="test", ks=(1, 5))
    # user 1: last 5, no transitions: unseen {4, 6, 7, 8} by popularity, 6 ties with 7, 8 -> 3.
    # user 2: last 6 -> popularity; unseen {3, 5, 7, 8}: 3 first, 5 ties with 7, 8 -> rank 3.
    # user 3: target 1 is in the history -> a miss. user 4: target 8 in the history -> a miss.
    assert result.ranks.tolist() == [3, 3, 9, 9]
    assert result.per_user["hr@5"].tolist() == [1, 1, 0, 0]


def test_baselines_are_scorers(hand_made: PreparedDataset) -> None:
    for name in ("most-popular", "markov"):
        scorer = baseline_scorer(name, hand_made)
        assert isinstance(scorer, Scorer)
        assert scorer.name == name
        assert scorer.max_len == 1
    with pytest.raises(ConfigError, match="--baseline 'random'"):
        baseline_scorer("random", hand_made)
