"""Evaluating scorers end to end on prepared datasets: per-user results, history exclusion,
batching, seeded negatives shared by every scorer of a task, and errors that name the flag."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from recsys.data import PreparedDataset
from recsys.errors import ConfigError, DataError
from recsys.evaluation import (
    ModelScorer,
    evaluate_scorer,
    evaluation_task,
    markov_scorer,
    most_popular_scorer,
    run_evaluation,
)
from recsys.models import SASRec, SASRecConfig


def test_history_items_are_excluded_under_full_ranking(hand_made: PreparedDataset) -> None:
    result = evaluate_scorer(hand_made, most_popular_scorer(hand_made), "validation", ks=(1, 5))
    # Popularity: 2 > 1 = 3 > 4 > 5..8 (all 0). User 1 saw 1, 2, 3; its target 5 ties with
    # 6, 7, 8 below 4 -> rank 4 (rank 7 if the history were not excluded). User 4 saw 2, 3.
    assert result.ranks.tolist() == [4, 4, 4, 5]
    assert result.user_indices.tolist() == [1, 2, 3, 4]
    assert result.top_items is not None
    assert result.top_items[0, 0] == 4 and result.top_items[3, :2].tolist() == [1, 4]
    assert result.per_user["hr@5"].tolist() == [1, 1, 1, 0]
    assert result.num_candidates == 8


def test_results_hold_every_metric_per_user(synthetic: PreparedDataset) -> None:
    result = evaluate_scorer(synthetic, markov_scorer(synthetic), ks=(5, 10))
    expected = {
        f"{m}@{k}" for m in ("hr", "ndcg", "mrr", "precision", "avg_popularity") for k in (5, 10)
    }
    assert set(result.per_user) == expected
    assert set(result.coverage) == {"coverage@5", "coverage@10"}
    for name, values in result.per_user.items():
        assert values.shape == (result.num_users,)
        assert result.means[name] == pytest.approx(values.mean())
    assert result.means["hr@10"] >= result.means["hr@5"]
    assert 0 < result.coverage["coverage@5"] <= result.coverage["coverage@10"] <= 1


def test_batch_size_does_not_change_anything(synthetic: PreparedDataset) -> None:
    model = SASRec(SASRecConfig(num_items=synthetic.num_items, max_len=8, hidden_size=16))
    scorer = ModelScorer(model)
    task = evaluation_task(synthetic, "test", "full", ks=(10,))
    small, large = run_evaluation(task, scorer, batch_size=7), run_evaluation(task, scorer)
    assert np.array_equal(small.ranks, large.ranks)
    assert small.top_items is not None and large.top_items is not None
    assert np.array_equal(small.top_items, large.top_items)


def test_a_user_sample_gives_each_sampled_user_the_numbers_of_the_whole_split(
    synthetic: PreparedDataset,
) -> None:
    model = SASRec(SASRecConfig(num_items=synthetic.num_items, max_len=8, hidden_size=16))
    scorer = ModelScorer(model)
    whole = run_evaluation(evaluation_task(synthetic, "test", "full", ks=(10,)), scorer)
    task = evaluation_task(synthetic, "test", "full", ks=(10,), seed=3, users=40)
    sample = run_evaluation(task, scorer)
    assert sample.num_users == 40
    assert task.settings == {"users_sampled": 40, "users_in_split": whole.num_users, "seed": 3}
    rows = np.searchsorted(whole.user_indices, sample.user_indices)
    assert np.array_equal(whole.user_indices[rows], sample.user_indices)
    assert np.array_equal(whole.ranks[rows], sample.ranks)
    assert whole.top_items is not None and sample.top_items is not None
    assert np.array_equal(whole.top_items[rows], sample.top_items)
    again = evaluation_task(synthetic, "test", "full", ks=(10,), seed=3, users=40)
    other = evaluation_task(synthetic, "test", "full", ks=(10,), seed=4, users=40)
    assert np.array_equal(again.held_out.user_indices, task.held_out.user_indices)
    assert not np.array_equal(other.held_out.user_indices, task.held_out.user_indices)


def test_a_sample_at_least_the_split_is_the_whole_split(synthetic: PreparedDataset) -> None:
    whole = evaluation_task(synthetic, "test", "full", ks=(10,))
    task = evaluation_task(synthetic, "test", "full", ks=(10,), users=whole.num_users)
    assert task.settings == {}
    assert np.array_equal(task.held_out.user_indices, whole.held_out.user_indices)
    with pytest.raises(ConfigError, match="--users"):
        evaluation_task(synthetic, "test", "full", ks=(10,), users=0)


def test_sampled_protocol_is_seeded_and_shared_by_every_scorer(synthetic: PreparedDataset) -> None:
    task = evaluation_task(synthetic, "test", "sampled", ks=(10,), num_negatives=20, seed=3)
    again = evaluation_task(synthetic, "test", "sampled", ks=(10,), num_negatives=20, seed=3)
    other = evaluation_task(synthetic, "test", "sampled", ks=(10,), num_negatives=20, seed=4)
    assert task.candidates is not None and again.candidates is not None
    assert other.candidates is not None
    assert task.candidates.shape == (task.num_users, 21)
    assert np.array_equal(task.candidates[:, 0], task.held_out.targets)
    assert np.array_equal(task.candidates, again.candidates)
    assert not np.array_equal(task.candidates, other.candidates)
    popular = run_evaluation(task, most_popular_scorer(synthetic))
    assert popular.num_candidates == 21 and popular.top_items is None
    assert popular.settings == {"num_negatives": 20, "negative_sampling": "uniform", "seed": 3}
    assert np.array_equal(
        popular.ranks, run_evaluation(again, most_popular_scorer(synthetic)).ranks
    )
    assert popular.ranks.max() <= 20


def test_sampled_numbers_are_higher_than_full_ones(synthetic: PreparedDataset) -> None:
    scorer = markov_scorer(synthetic)
    full = evaluate_scorer(synthetic, scorer, protocol="full")
    sampled = evaluate_scorer(synthetic, scorer, protocol="sampled", num_negatives=20)
    assert sampled.means["hr@10"] > full.means["hr@10"]


def test_repeated_targets_are_counted(hand_made: PreparedDataset) -> None:
    assert evaluation_task(hand_made, "test").repeated_targets == 2  # users 3 and 4
    assert evaluation_task(hand_made, "validation").repeated_targets == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"split": "train"}, "--split 'train'"),
        ({"protocol": "half"}, "--protocol 'half'"),
        ({"ks": (0, 5)}, "--k"),
        (
            {"protocol": "sampled", "ks": (10,), "num_negatives": 3},
            "--k 10 is longer than the 4 candidates",
        ),
        ({"protocol": "sampled", "ks": (1,), "num_negatives": 4}, "--negatives 4 is too many"),
        ({"protocol": "sampled", "ks": (1,), "negative_sampling": "zipf"}, "--negative-sampling"),
    ],
)
def test_bad_options_name_their_flag(
    hand_made: PreparedDataset, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        evaluation_task(hand_made, **options)


def test_a_bad_batch_size_names_its_flag(hand_made: PreparedDataset) -> None:
    with pytest.raises(ConfigError, match="--batch-size"):
        run_evaluation(evaluation_task(hand_made), most_popular_scorer(hand_made), batch_size=0)


def test_a_scorer_of_another_catalogue_is_refused(hand_made: PreparedDataset) -> None:
    model = SASRec(SASRecConfig(num_items=hand_made.num_items + 3, max_len=4, hidden_size=8))
    with pytest.raises(DataError, match="returned scores of shape"):
        evaluate_scorer(hand_made, ModelScorer(model))


@pytest.mark.parametrize("first", ["recsys.evaluation.report", "recsys.training"])
def test_the_package_imports_in_any_order(first: str) -> None:
    """recsys.training imports the metrics from recsys.evaluation, which imports training code."""
    code = f"import {first}; import recsys.evaluation, recsys.training; print('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
