"""Evaluate any ``Scorer`` on a split: batched scoring, ranks under a protocol, per-user metrics.

An ``EvaluationTask`` fixes who is evaluated on what (users, held-out items, histories, sampled
negatives); running several scorers on one task evaluates them on identical users and candidates,
which is what a paired comparison needs.

Shape letters: N users evaluated, B batch, L window length, V catalogue size, K longest list.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from recsys.data import HeldOutTargets, PreparedDataset, evaluation_batch, held_out_targets
from recsys.data import columns as C
from recsys.errors import ConfigError, DataError
from recsys.evaluation.baselines import training_popularity
from recsys.evaluation.metrics import RANK_METRICS, average_popularity_at_k, catalogue_coverage
from recsys.evaluation.negatives import (
    NegativeSampling,
    interacted_keys,
    sample_negatives,
    sampling_weights,
)
from recsys.evaluation.protocols import (
    PROTOCOLS,
    EvaluationProtocol,
    full_ranking,
    sampled_ranking,
)
from recsys.evaluation.scorers import Scorer

EVALUATION_SPLITS = (C.VALIDATION, C.TEST)
_SCORE_CELLS_PER_BATCH = 1 << 22
"""Default batch: about 4M scores (16 MB of float32). Bigger score matrices are fresh memory
mappings on every batch (glibc's threshold is at most 32 MB), and page-faulting them in costs
more than scoring them on the CPU."""


def default_batch_size(num_items: int) -> int:
    """Users per batch when none is given: ~4M scores per batch, between 16 and 4096 users.

    >>> default_batch_size(23_715)
    176
    """
    return max(16, min(4096, _SCORE_CELLS_PER_BATCH // (num_items + 1)))


@dataclass(frozen=True)
class EvaluationTask:
    """Users, held-out items, histories and (sampled protocol) candidates, fixed once."""

    split: str
    protocol: EvaluationProtocol
    ks: tuple[int, ...]
    held_out: HeldOutTargets
    num_items: int
    popularity: torch.Tensor
    """[V + 1] training interaction counts (for the average-popularity metric)."""
    candidates: np.ndarray | None
    """Sampled protocol: [N, 1 + negatives], the held-out item first; ``None`` for ``full``."""
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        return len(self.held_out.targets)

    @property
    def repeated_targets(self) -> int:
        """Users whose held-out item is already in their history (a miss under ``full``)."""
        histories = self.held_out.histories
        rows = np.repeat(np.arange(len(histories)), histories.lengths)  # [total history]
        repeats = histories.items == self.held_out.targets[rows]
        return int(np.unique(rows[repeats]).size)


@dataclass(frozen=True)
class EvaluationResult:
    """One scorer on one task: per-user metric values (users in ``user_indices`` order)."""

    name: str
    split: str
    protocol: str
    ks: tuple[int, ...]
    user_indices: np.ndarray
    ranks: np.ndarray
    """[N] 0-based rank of each user's held-out item among its candidates."""
    per_user: dict[str, np.ndarray]
    """``hr@K``, ``ndcg@K``, ``mrr@K``, ``precision@K`` (+ ``avg_popularity@K`` under ``full``)."""
    coverage: dict[str, float]
    """``coverage@K`` under ``full`` (a catalogue-level number, no per-user value)."""
    num_candidates: int
    settings: dict[str, Any]
    seconds: float
    top_items: np.ndarray | None = None
    """Under ``full``: [N, max K] recommended items, best first (-1: empty slot)."""

    @property
    def num_users(self) -> int:
        return len(self.user_indices)

    @property
    def means(self) -> dict[str, float]:
        """Every metric as one number: per-user means, then coverage."""
        means = {name: float(values.mean()) for name, values in self.per_user.items()}
        return {**means, **self.coverage}


def check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    """Distinct positive list lengths, ascending; anything else raises ``ConfigError``."""
    values = tuple(sorted(set(ks)))
    if not values or values[0] < 1:
        raise ConfigError(f"--k needs positive list lengths, got {list(ks)}")
    return values


def evaluation_task(
    dataset: PreparedDataset,
    split: str = C.TEST,
    protocol: EvaluationProtocol = "full",
    ks: Iterable[int] = (10,),
    num_negatives: int = 100,
    negative_sampling: NegativeSampling = "uniform",
    seed: int = 0,
    users: int | None = None,
) -> EvaluationTask:
    """Fix the users, held-out items and (for ``sampled``) the seeded negatives of a split.

    ``users``: evaluate a seeded uniform sample of that many users instead of all of them (a
    million-user split is measured in minutes). The bootstrap over the sampled users then also
    covers the sampling error, so the report's intervals stay honest; each sampled user's
    values are exactly what the whole-split run gives that user.
    """
    if split not in EVALUATION_SPLITS:
        raise ConfigError(f"--split {split!r}: expected one of {', '.join(EVALUATION_SPLITS)}")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    list_lengths = check_ks(ks)
    if users is not None and users < 1:
        raise ConfigError(f"--users must be >= 1, got {users}")
    held_out = held_out_targets(dataset, split)
    if len(held_out.targets) == 0:
        raise DataError(f"the {split} split has no user with a history before it: nothing to rank")
    settings: dict[str, Any] = {}
    if users is not None and users < len(held_out.targets):
        settings = {"users_sampled": users, "users_in_split": len(held_out.targets), "seed": seed}
        held_out = held_out.sample(users, seed)
    candidates = None
    if protocol == "sampled":
        if list_lengths[-1] > num_negatives + 1:
            raise ConfigError(
                f"--k {list_lengths[-1]} is longer than the {num_negatives + 1} candidates of "
                "the sampled protocol (raise --negatives or lower --k)"
            )
        negatives = sample_negatives(
            interacted_keys(dataset, held_out.user_indices),
            num_users=len(held_out.targets),
            num_items=dataset.num_items,
            num_negatives=num_negatives,
            rng=np.random.default_rng(seed),
            weights=sampling_weights(dataset, negative_sampling),
        )
        candidates = np.concatenate([held_out.targets[:, None], negatives], axis=1)
        settings |= {
            "num_negatives": num_negatives,
            "negative_sampling": negative_sampling,
            "seed": seed,
        }
    return EvaluationTask(
        split=split,
        protocol=protocol,
        ks=list_lengths,
        held_out=held_out,
        num_items=dataset.num_items,
        popularity=training_popularity(dataset),
        candidates=candidates,
        settings=settings,
    )


def run_evaluation(
    task: EvaluationTask,
    scorer: Scorer,
    batch_size: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> EvaluationResult:
    """Score every user of ``task`` in batches (similar history lengths together) and rank.

    ``batch_size`` users are scored at once (``None``: ``default_batch_size``, good for the
    CPU; a GPU scorer may prefer more). ``on_progress(done, total)`` is called after each batch.
    """
    if batch_size is None:
        batch_size = default_batch_size(task.num_items)
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    started = time.perf_counter()
    full = task.candidates is None
    list_length = task.ks[-1]
    ranks = np.empty(task.num_users, dtype=np.int64)  # [N]
    top_items = np.full((task.num_users, list_length), -1, dtype=np.int64)  # [N, K]
    order = np.argsort(task.held_out.histories.lengths, kind="stable")
    for start in range(0, task.num_users, batch_size):
        rows = order[start : start + batch_size]
        inputs, targets, seen = evaluation_batch(task.held_out, rows.tolist(), scorer.max_len)
        scores = scorer(inputs)  # [B, V + 1]
        _check_scores(scores, len(rows), task.num_items, scorer.name)
        if task.candidates is None:
            batch_ranks, batch_top = full_ranking(
                scores, seen.to(scores.device), targets.to(scores.device), list_length
            )
            top_items[rows, : batch_top.size(1)] = batch_top.cpu().numpy()
        else:
            candidates = torch.from_numpy(task.candidates[rows]).to(scores.device)  # [B, C]
            batch_ranks = sampled_ranking(scores, candidates)
        ranks[rows] = batch_ranks.cpu().numpy()
        if on_progress is not None:
            on_progress(min(start + batch_size, task.num_users), task.num_users)
    per_user, coverage = _metrics(task, ranks, top_items if full else None)
    num_candidates = task.num_items if task.candidates is None else task.candidates.shape[1]
    return EvaluationResult(
        name=scorer.name,
        split=task.split,
        protocol=task.protocol,
        ks=task.ks,
        user_indices=task.held_out.user_indices,
        ranks=ranks,
        per_user=per_user,
        coverage=coverage,
        num_candidates=int(num_candidates),
        settings=task.settings,
        seconds=time.perf_counter() - started,
        top_items=top_items if full else None,
    )


def evaluate_scorer(
    dataset: PreparedDataset,
    scorer: Scorer,
    split: str = C.TEST,
    protocol: EvaluationProtocol = "full",
    ks: Iterable[int] = (10,),
    num_negatives: int = 100,
    negative_sampling: NegativeSampling = "uniform",
    seed: int = 0,
    batch_size: int | None = None,
    users: int | None = None,
) -> EvaluationResult:
    """One scorer on one split: ``evaluation_task`` then ``run_evaluation``.

    To compare several scorers on the same users and negatives, build the task once and call
    ``run_evaluation`` for each (the same seed also reproduces the same negatives).
    """
    task = evaluation_task(
        dataset, split, protocol, ks, num_negatives, negative_sampling, seed, users
    )
    return run_evaluation(task, scorer, batch_size)


def _check_scores(scores: torch.Tensor, batch: int, num_items: int, name: str) -> None:
    if scores.shape != (batch, num_items + 1):
        raise DataError(
            f"scorer {name!r} returned scores of shape {tuple(scores.shape)}; the catalogue "
            f"needs ({batch}, {num_items + 1}): is it the model of another dataset?"
        )


def _metrics(
    task: EvaluationTask, ranks: np.ndarray, top_items: np.ndarray | None
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    rank_tensor = torch.from_numpy(ranks)  # [N]
    per_user: dict[str, np.ndarray] = {}
    coverage: dict[str, float] = {}
    for k in task.ks:
        for prefix, metric in RANK_METRICS.items():
            per_user[f"{prefix}@{k}"] = metric(rank_tensor, k).double().numpy()
    if top_items is not None:
        top = torch.from_numpy(top_items)  # [N, K]
        for k in task.ks:
            per_user[f"avg_popularity@{k}"] = average_popularity_at_k(
                top, task.popularity, k
            ).numpy()
            coverage[f"coverage@{k}"] = catalogue_coverage(top[:, :k], task.num_items)
    return per_user, coverage
