"""PNG plots of an evaluation: metric@K curves, and the model against baselines at each K."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from recsys.evaluation.bootstrap import Interval  # noqa: E402
from recsys.evaluation.runner import EvaluationResult  # noqa: E402

CURVE_METRICS = ("hr", "ndcg", "mrr", "precision")
COMPARISON_METRICS = ("hr", "ndcg")


def plot_metrics_at_k(
    results: Sequence[EvaluationResult],
    intervals: dict[str, dict[str, Interval]],
    out: Path,
) -> Path:
    """One panel per metric: its value against K for every scorer, with the interval as a band."""
    figure, axes = plt.subplots(1, len(CURVE_METRICS), figsize=(4 * len(CURVE_METRICS), 3.6))
    for axis, prefix in zip(axes, CURVE_METRICS, strict=True):
        for result in results:
            ks = list(result.ks)
            cells = [intervals[result.name][f"{prefix}@{k}"] for k in ks]
            estimates = [cell.estimate for cell in cells]
            axis.plot(ks, estimates, marker="o", markersize=3, label=result.name)
            axis.fill_between(
                ks, [cell.low for cell in cells], [cell.high for cell in cells], alpha=0.2
            )
        axis.set(xlabel="K", title=f"{prefix}@K")
        axis.set_xticks(list(results[0].ks))
    axes[0].legend()
    _finish(figure, _title(results), out)
    return out


def plot_comparison(
    results: Sequence[EvaluationResult],
    intervals: dict[str, dict[str, Interval]],
    out: Path,
) -> Path:
    """Grouped bars per K (one bar per scorer) for HR and NDCG, interval whiskers on top."""
    ks = list(results[0].ks)
    figure, axes = plt.subplots(1, len(COMPARISON_METRICS), figsize=(11, 4))
    width = 0.8 / len(results)
    positions = np.arange(len(ks))
    for axis, prefix in zip(axes, COMPARISON_METRICS, strict=True):
        for index, result in enumerate(results):
            cells = [intervals[result.name][f"{prefix}@{k}"] for k in ks]
            estimates = np.array([cell.estimate for cell in cells])
            errors = np.array(
                [
                    [e - c.low for e, c in zip(estimates, cells, strict=True)],
                    [c.high - e for e, c in zip(estimates, cells, strict=True)],
                ]
            )
            axis.bar(
                positions + (index - (len(results) - 1) / 2) * width,
                estimates,
                width,
                yerr=errors,
                capsize=3,
                label=result.name,
            )
        axis.set_xticks(positions, [f"@{k}" for k in ks])
        axis.set(title=f"{prefix}@K", ylabel=prefix)
    axes[0].legend()
    _finish(figure, _title(results), out)
    return out


def _title(results: Sequence[EvaluationResult]) -> str:
    first = results[0]
    return f"{first.split} split, {first.protocol} protocol, {first.num_users:,} users"


def _finish(figure: Figure, title: str, out: Path) -> None:
    figure.suptitle(title)
    save_figure(figure, out)


def save_figure(figure: Figure, path: Path, dpi: int = 110) -> None:
    """Lay out, write ``path`` as a PNG (to a temporary sibling first, then renamed: a reader
    never sees half a file) and close the figure."""
    figure.tight_layout()
    staging = path.with_name(f".{path.name}.tmp.png")
    try:
        figure.savefig(staging, dpi=dpi)
        staging.replace(path)
    finally:
        plt.close(figure)
        staging.unlink(missing_ok=True)
