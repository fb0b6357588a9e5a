"""An evaluation report: intervals for every scorer, paired differences, and the report folder.

The first result is the reference (the model); every other one (the baselines) is compared with
it on the same users: ``reference - other`` with a bootstrap interval.

Report folder (written atomically)::

    metrics.json        settings, per-scorer metrics with intervals, paired differences
    report.md           the same as tables, with the plots
    metrics_at_k.png    HR / NDCG / MRR / Precision against K, one line per scorer
    comparison.png      model against baselines at each K, with interval whiskers
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recsys.errors import DataError
from recsys.evaluation.bootstrap import Interval, metric_intervals, paired_differences
from recsys.evaluation.plots import plot_comparison, plot_metrics_at_k
from recsys.evaluation.runner import EvaluationResult
from recsys.io import atomic_directory, atomic_write_text, write_json

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
METRICS_AT_K_PLOT = "metrics_at_k.png"
COMPARISON_PLOT = "comparison.png"
_TABLE_METRICS = ("hr", "ndcg", "mrr", "precision", "avg_popularity")


@dataclass(frozen=True)
class Comparison:
    """``reference - other`` for every per-user metric the two share."""

    reference: str
    other: str
    differences: dict[str, Interval]


@dataclass(frozen=True)
class EvaluationReport:
    """Everything a report folder holds, before it is written."""

    results: list[EvaluationResult]
    intervals: dict[str, dict[str, Interval]]
    """Scorer name -> metric -> mean with its bootstrap interval."""
    comparisons: list[Comparison]
    bootstrap: dict[str, Any]
    context: dict[str, Any] = field(default_factory=dict)
    """Where the numbers come from: dataset, checkpoint, ... (copied into ``metrics.json``)."""


def build_report(
    results: Sequence[EvaluationResult],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    context: dict[str, Any] | None = None,
) -> EvaluationReport:
    """Intervals for each result and paired differences of the first against each other one."""
    if not results:
        raise DataError("nothing to report: no evaluation results")
    reference = results[0]
    for other in results[1:]:
        same = (other.split, other.protocol, other.ks) == (
            reference.split,
            reference.protocol,
            reference.ks,
        )
        if not same or not np.array_equal(other.user_indices, reference.user_indices):
            raise DataError(
                f"{other.name!r} and {reference.name!r} were not evaluated on the same task "
                "(split, protocol, K and users must match)"
            )
    names = [result.name for result in results]
    if len(set(names)) != len(names):
        raise DataError(f"scorer names must be distinct in one report, got {names}")
    intervals = {
        result.name: metric_intervals(result.per_user, n_resamples, confidence, seed)
        for result in results
    }
    comparisons = [
        Comparison(
            reference.name,
            other.name,
            paired_differences(reference.per_user, other.per_user, n_resamples, confidence, seed),
        )
        for other in results[1:]
    ]
    settings = {"resamples": n_resamples, "confidence": confidence, "seed": seed}
    return EvaluationReport(list(results), intervals, comparisons, settings, dict(context or {}))


def report_payload(report: EvaluationReport) -> dict[str, Any]:
    """The ``metrics.json`` content."""
    reference = report.results[0]
    return {
        "created_at": datetime.now(UTC).isoformat(),
        "split": reference.split,
        "protocol": reference.protocol,
        "protocol_description": protocol_description(reference),
        "ks": list(reference.ks),
        "num_users": reference.num_users,
        "num_candidates": reference.num_candidates,
        "settings": reference.settings,
        "bootstrap": report.bootstrap,
        "context": report.context,
        "reference": reference.name,
        "scorer_names": [result.name for result in report.results],
        "scorers": {
            result.name: {
                "metrics": {
                    name: interval.as_dict()
                    for name, interval in report.intervals[result.name].items()
                },
                "coverage": result.coverage,
                "seconds": round(result.seconds, 3),
            }
            for result in report.results
        },
        "comparisons": [
            {
                "reference": comparison.reference,
                "other": comparison.other,
                "differences": {
                    name: {**interval.as_dict(), "excludes_zero": interval.excludes_zero}
                    for name, interval in comparison.differences.items()
                },
            }
            for comparison in report.comparisons
        ],
    }


def protocol_description(result: EvaluationResult) -> str:
    """One sentence saying what the numbers rank against (full and sampled are not comparable)."""
    if result.protocol == "full":
        return (
            f"full ranking: the held-out item against all {result.num_candidates} items, the "
            "user's history items excluded"
        )
    settings = result.settings
    return (
        f"sampled: the held-out item against {settings.get('num_negatives')} negatives drawn "
        f"({settings.get('negative_sampling')}, seed {settings.get('seed')}) from items the "
        "user never interacted with"
    )


def _users_evaluated(result: EvaluationResult) -> str:
    in_split = result.settings.get("users_in_split")
    if in_split is None:
        return f"{result.num_users:,}"
    return (
        f"{result.num_users:,}, a uniform sample (seed {result.settings.get('seed')}) of the "
        f"split's {in_split:,}; the intervals include the sampling error"
    )


def markdown_report(report: EvaluationReport) -> str:
    """Tables of the metrics and paired differences, with the plots."""
    reference = report.results[0]
    level = round(100 * float(report.bootstrap["confidence"]))
    context = report.context.items()
    lines = [
        f"# Offline evaluation: {reference.split} split, {reference.protocol} protocol",
        "",
        f"- Protocol: {protocol_description(reference)}.",
        f"- Users evaluated: {_users_evaluated(reference)}.",
        f"- Intervals: {level}% percentile bootstrap over users, "
        f"{report.bootstrap['resamples']} resamples (seed {report.bootstrap['seed']}).",
        *[f"- {key.replace('_', ' ').capitalize()}: {value}" for key, value in context],
        "",
        "## Metrics",
        "",
        *_metrics_table(report),
    ]
    if report.comparisons:
        lines += [
            "",
            f"## Paired differences ({reference.name} minus each other scorer, same users)",
            "",
            "`*`: the interval excludes 0.",
            "",
            *_differences_table(report),
        ]
    lines += [
        "",
        "## Plots",
        "",
        f"![metrics at K]({METRICS_AT_K_PLOT})",
        "",
        f"![comparison]({COMPARISON_PLOT})",
        "",
    ]
    return "\n".join(lines)


def write_report(report: EvaluationReport, out: Path, overwrite: bool = False) -> Path:
    """Write the report folder atomically: all files appear at ``out`` at once, or none."""
    with atomic_directory(Path(out), overwrite=overwrite) as staging:
        write_json(staging / METRICS_FILE, report_payload(report))
        plot_metrics_at_k(report.results, report.intervals, staging / METRICS_AT_K_PLOT)
        plot_comparison(report.results, report.intervals, staging / COMPARISON_PLOT)
        atomic_write_text(staging / REPORT_FILE, markdown_report(report))
    return Path(out)


def _present(report: EvaluationReport) -> list[str]:
    names = {name.split("@")[0] for intervals in report.intervals.values() for name in intervals}
    return [prefix for prefix in _TABLE_METRICS if prefix in names]


def _metrics_table(report: EvaluationReport) -> list[str]:
    prefixes = _present(report)
    has_coverage = any(result.coverage for result in report.results)
    header = ["scorer", "K", *prefixes, *(["coverage"] if has_coverage else [])]
    rows = [_row(header), _row(["---"] * len(header))]
    for result in report.results:
        intervals = report.intervals[result.name]
        for k in result.ks:
            cells = [result.name, str(k)]
            cells += [_interval(intervals[f"{prefix}@{k}"]) for prefix in prefixes]
            if has_coverage:
                cells.append(f"{result.coverage.get(f'coverage@{k}', float('nan')):.4f}")
            rows.append(_row(cells))
    return rows


def _differences_table(report: EvaluationReport) -> list[str]:
    prefixes = _present(report)
    header = ["other scorer", "K", *prefixes]
    rows = [_row(header), _row(["---"] * len(header))]
    for comparison in report.comparisons:
        for k in report.results[0].ks:
            cells = [comparison.other, str(k)]
            for prefix in prefixes:
                interval = comparison.differences[f"{prefix}@{k}"]
                mark = "*" if interval.excludes_zero else ""
                cells.append(f"{_interval(interval, signed=True)}{mark}")
            rows.append(_row(cells))
    return rows


def _interval(interval: Interval, signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{interval.estimate:{sign}.4f} [{interval.low:{sign}.4f}, {interval.high:{sign}.4f}]"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
