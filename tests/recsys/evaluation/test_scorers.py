"""A backbone as a scorer: a score for every item, the padding column excluded, eval mode."""

from __future__ import annotations

import torch

from recsys.evaluation import ModelScorer
from recsys.models import SASRec, SASRecConfig


def test_model_scorer_scores_every_item_with_padding_excluded() -> None:
    model = SASRec(SASRecConfig(num_items=12, max_len=5, hidden_size=8))
    scorer = ModelScorer(model, name="tiny")
    scores = scorer(torch.tensor([[0, 0, 3, 4, 5]]))
    assert scores.shape == (1, 13) and torch.isneginf(scores[0, 0])
    assert scorer.max_len == 5 and not model.training
