"""The report: intervals per scorer, paired differences against the first, the folder on disk."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from recsys.data import PreparedDataset
from recsys.errors import DataError, OutputExistsError
from recsys.evaluation import (
    EvaluationReport,
    EvaluationResult,
    EvaluationTask,
    build_report,
    evaluation_task,
    markdown_report,
    markov_scorer,
    most_popular_scorer,
    run_evaluation,
    write_report,
)


@dataclass(frozen=True)
class Compared:
    task: EvaluationTask
    results: list[EvaluationResult]
    report: EvaluationReport


@pytest.fixture(scope="module")
def compared(synthetic: PreparedDataset) -> Compared:
    """Markov against most-popular on the synthetic test split, and their report."""
    task = evaluation_task(synthetic, "test", "full", ks=(5, 10))
    results = [
        run_evaluation(task, markov_scorer(synthetic)),
        run_evaluation(task, most_popular_scorer(synthetic)),
    ]
    report = build_report(results, n_resamples=200, context={"dataset": "synthetic"})
    return Compared(task, results, report)


def test_report_folder_has_metrics_markdown_and_plots(compared: Compared, tmp_path: Path) -> None:
    task, results = compared.task, compared.results
    out = write_report(compared.report, tmp_path / "report")
    assert sorted(p.name for p in out.iterdir()) == [
        "comparison.png",
        "metrics.json",
        "metrics_at_k.png",
        "report.md",
    ]
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["protocol"] == "full" and payload["ks"] == [5, 10]
    assert payload["num_users"] == task.num_users
    markov = payload["scorers"]["markov"]["metrics"]["ndcg@10"]
    assert markov["ci_low"] <= markov["mean"] <= markov["ci_high"]
    assert markov["mean"] == pytest.approx(results[0].means["ndcg@10"])
    assert set(payload["scorers"]["markov"]["coverage"]) == {"coverage@5", "coverage@10"}
    [comparison] = payload["comparisons"]
    assert (comparison["reference"], comparison["other"]) == ("markov", "most-popular")
    difference = comparison["differences"]["hr@10"]
    assert difference["mean"] == pytest.approx(
        results[0].means["hr@10"] - results[1].means["hr@10"]
    )
    text = (out / "report.md").read_text()
    assert "full ranking" in text and "Paired differences" in text and "most-popular" in text
    assert "![metrics at K](metrics_at_k.png)" in text


def test_an_existing_report_folder_is_refused_unless_overwrite(
    compared: Compared, tmp_path: Path
) -> None:
    out = write_report(compared.report, tmp_path / "report")
    with pytest.raises(OutputExistsError):
        write_report(compared.report, out)
    write_report(compared.report, out, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no staging folder left behind


def test_sampled_report_says_so(synthetic: PreparedDataset) -> None:
    task = evaluation_task(synthetic, "validation", "sampled", ks=(10,), num_negatives=20)
    report = build_report([run_evaluation(task, most_popular_scorer(synthetic))], n_resamples=50)
    text = markdown_report(report)
    assert "sampled: the held-out item against 20 negatives" in text
    assert "Paired differences" not in text


def test_results_of_different_tasks_cannot_be_compared(synthetic: PreparedDataset) -> None:
    scorer = most_popular_scorer(synthetic)
    test = run_evaluation(evaluation_task(synthetic, "test"), scorer)
    validation = run_evaluation(evaluation_task(synthetic, "validation"), markov_scorer(synthetic))
    with pytest.raises(DataError, match="not evaluated on the same task"):
        build_report([test, validation])


def test_a_result_cannot_be_compared_with_itself(synthetic: PreparedDataset) -> None:
    test = run_evaluation(evaluation_task(synthetic, "test"), most_popular_scorer(synthetic))
    with pytest.raises(DataError, match="distinct"):
        build_report([test, test])
