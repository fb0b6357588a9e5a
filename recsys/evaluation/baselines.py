"""Baselines that go through the same evaluation code as the model: most-popular and Markov.

Both learn from the training split only, as the model does: most-popular ranks by ``train_count``
(``items.parquet``); the first-order Markov baseline ranks by how often each item followed the
user's last item in the training sequences, ties broken by training popularity.

Shape letters: B batch, L window length, V catalogue size, E transitions leaving the batch's
last items.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import polars as pl
import torch

from recsys.data import PreparedDataset
from recsys.data import columns as C
from recsys.errors import ConfigError
from recsys.evaluation.scorers import Scorer

BaselineName = Literal["most-popular", "markov"]
BASELINE_NAMES: tuple[str, ...] = get_args(BaselineName)


def training_popularity(dataset: PreparedDataset) -> torch.Tensor:
    """``train_count`` per item index as float64, 0 at the padding index: [V + 1]."""
    counts = dataset.items.table.sort(dataset.items.index_col).get_column("train_count")
    values = torch.tensor(counts.to_numpy(), dtype=torch.float64)  # a copy: polars owns its array
    return torch.cat([torch.zeros(1, dtype=torch.float64), values])


@dataclass(eq=False)
class MostPopularScorer:
    """The same list for everyone: items by training popularity."""

    popularity: torch.Tensor
    """[V + 1] float scores, ``-inf`` at the padding index."""
    name: str = "most-popular"
    max_len: int = 1

    def __call__(self, history_windows: torch.Tensor) -> torch.Tensor:
        return self.popularity.expand(history_windows.size(0), -1)  # [B, V + 1], a view


@dataclass(eq=False)
class MarkovScorer:
    """Scores = count(last item -> item) in training, ties broken by training popularity.

    Encoded exactly as integers ``count * (P + 1) + popularity`` (P: the largest popularity),
    in float32 while they stay below 2**24, float64 beyond. Transitions are stored
    row-compressed: the items following item ``a`` are ``next_items[offsets[a]:offsets[a + 1]]``.
    """

    offsets: torch.Tensor
    """[V + 2] int64."""
    next_items: torch.Tensor
    """[E_total] int64."""
    weights: torch.Tensor
    """[E_total] ``count * (P + 1)`` of each transition."""
    base: torch.Tensor
    """[V + 1] training popularity, ``-inf`` at the padding index."""
    name: str = "markov"
    max_len: int = 1

    def __call__(self, history_windows: torch.Tensor) -> torch.Tensor:
        last = history_windows[:, -1].cpu()  # [B]; 0 (no history) has no transitions
        starts, ends = self.offsets[last], self.offsets[last + 1]  # [B], [B]
        lengths = ends - starts  # [B]
        rows = torch.repeat_interleave(torch.arange(len(last)), lengths)  # [E]
        first_of_row = torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)  # [E]
        positions = torch.arange(len(rows)) - first_of_row + starts[rows]  # [E]
        scores = self.base.expand(len(last), -1).clone()  # [B, V + 1]
        scores.index_put_((rows, self.next_items[positions]), self.weights[positions], True)
        return scores


def most_popular_scorer(dataset: PreparedDataset) -> MostPopularScorer:
    """Rank every item by its number of training interactions."""
    scores = training_popularity(dataset).clone()
    scores[0] = float("-inf")
    return MostPopularScorer(scores)


def markov_scorer(dataset: PreparedDataset) -> MarkovScorer:
    """Count last-item transitions in the training sequences (consecutive training events)."""
    num_items = dataset.num_items
    transitions = (
        dataset.split_frame(C.TRAIN)
        .sort(C.USER_IDX, C.POSITION)
        .select(
            pl.col(C.ITEM_IDX).shift(1).over(C.USER_IDX).alias("previous"),
            pl.col(C.ITEM_IDX).alias("next"),
        )
        .drop_nulls()
        .group_by("previous", "next")
        .len()
        .sort("previous", "next")
    )
    previous = transitions.get_column("previous").to_numpy().astype(np.int64)
    offsets = np.zeros(num_items + 2, dtype=np.int64)
    np.cumsum(np.bincount(previous, minlength=num_items + 1), out=offsets[1:])
    counts = transitions.get_column("len").to_numpy().astype(np.float64)
    popularity = training_popularity(dataset)
    scale = float(popularity.max()) + 1.0
    largest = (counts.max(initial=0.0) + 1.0) * scale
    dtype = torch.float32 if largest < 2**24 else torch.float64
    base = popularity.to(dtype)
    base[0] = float("-inf")
    return MarkovScorer(
        offsets=torch.from_numpy(offsets),
        next_items=torch.from_numpy(transitions.get_column("next").to_numpy().astype(np.int64)),
        weights=torch.from_numpy(counts * scale).to(dtype),
        base=base,
    )


BASELINES: dict[str, Callable[[PreparedDataset], Scorer]] = {
    "most-popular": most_popular_scorer,
    "markov": markov_scorer,
}
"""Baseline name (``--baseline``) -> a function building its scorer from a prepared dataset."""


def baseline_scorer(name: str, dataset: PreparedDataset) -> Scorer:
    """The named baseline's scorer; an unknown name raises ``ConfigError`` naming the flag."""
    if name not in BASELINES:
        raise ConfigError(f"--baseline {name!r}: expected one of {', '.join(BASELINE_NAMES)}")
    return BASELINES[name](dataset)
