"""Training curves from the CSV log: a summary of the best epoch and a PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from recsys.training.module import VALIDATION_METRIC  # noqa: E402


def epoch_metrics(metrics_csvs: list[Path]) -> pl.DataFrame:
    """One row per epoch: mean training loss and the validation metrics (where validated).

    Several CSV files (a run and its resumptions) are read as one log.
    """
    raw = pl.concat(
        [pl.read_csv(path, infer_schema_length=None) for path in metrics_csvs],
        how="diagonal_relaxed",
    )
    value_columns = [c for c in raw.columns if c.startswith(("val/", "train/loss_epoch"))]
    return (
        raw.filter(pl.col("epoch").is_not_null())
        .group_by("epoch")
        .agg([pl.col(c).drop_nulls().last() for c in value_columns])
        .sort("epoch")
    )


def validated_epochs(epochs: pl.DataFrame) -> pl.DataFrame:
    """The epochs that were validated (none when the run stopped before its first validation)."""
    if VALIDATION_METRIC not in epochs.columns:
        return epochs.clear()
    return epochs.filter(pl.col(VALIDATION_METRIC).is_not_null())


def best_epoch(epochs: pl.DataFrame) -> dict[str, Any]:
    """The epoch with the highest validation NDCG@10 and all its metrics."""
    validated = validated_epochs(epochs)
    if validated.height == 0:
        return {}
    row = validated.sort(VALIDATION_METRIC, descending=True).row(0, named=True)
    return {key: value for key, value in row.items() if value is not None}


def plot_curves(epochs: pl.DataFrame, out: Path, title: str, protocol: str) -> Path:
    """Training loss and validation NDCG@10 / HR@10 per epoch (under ``protocol``), side by side."""
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(11, 4))
    if "train/loss_epoch" in epochs.columns:
        loss_axis.plot(epochs["epoch"], epochs["train/loss_epoch"], marker="o", markersize=3)
    loss_axis.set(xlabel="epoch", ylabel="training loss", title="training loss")
    validated = validated_epochs(epochs)
    for name in ("val/ndcg@10", "val/hr@10", "val/ndcg@20", "val/hr@20"):
        if name in validated.columns:
            metric_axis.plot(
                validated["epoch"], validated[name], marker="o", markersize=3, label=name
            )
    metric_axis.set(xlabel="epoch", ylabel="metric", title=f"validation ({protocol})")
    metric_axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.tmp.png")
    figure.savefig(staging, dpi=110)
    plt.close(figure)
    staging.replace(out)
    return out
