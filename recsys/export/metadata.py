"""What the manifest says about a model besides its files: version id and offline metrics.

Validation metrics come from the training run's ``summary.json`` (beside ``checkpoints/``) when
the exported checkpoint is the run's best one; test (or validation) metrics from an evaluation
report (``recsys evaluate``'s ``metrics.json``) when the user passes one. Anything unknown is
left out rather than guessed.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from recsys.errors import ArtifactError

MODEL_TYPE = "sasrec"


def model_version(created_at: datetime, model_sha256: str) -> str:
    """``sasrec-<UTC yyyymmddThhmmssZ>-<first 8 hex of the model file's SHA-256>``.

    >>> from datetime import UTC, datetime
    >>> model_version(datetime(2026, 11, 22, 10, 15, tzinfo=UTC), "1a2b3c4d" + "0" * 56)
    'sasrec-20261122T101500Z-1a2b3c4d'
    """
    return f"{MODEL_TYPE}-{created_at.strftime('%Y%m%dT%H%M%SZ')}-{model_sha256[:8]}"


def training_metrics(checkpoint: Path) -> dict[str, Any]:
    """Best validation metrics from ``<run>/summary.json`` if ``checkpoint`` is that run's best
    checkpoint; ``{}`` otherwise (a ``last.ckpt`` is not the epoch those metrics describe)."""
    checkpoint = Path(checkpoint)
    summary_path = checkpoint.parent.parent / "summary.json"
    if checkpoint.parent.name != "checkpoints" or not summary_path.is_file():
        return {}
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    best = summary.get("best_checkpoint") if isinstance(summary, dict) else None
    if not best or Path(best).name != checkpoint.name:
        return {}
    values = summary.get("best_validation") or {}
    metrics = {key.removeprefix("val/"): value for key, value in values.items()}
    if not metrics:
        return {}
    return {
        "validation": {
            "source": str(summary_path),
            "protocol": "full",
            "epoch": summary.get("best_epoch"),
            "metrics": metrics,
        }
    }


def report_metrics(report: Path, checkpoint: Path, fingerprint: str) -> dict[str, Any]:
    """The model's metrics from an evaluation report, keyed by its split (``test``).

    Refused (naming ``--metrics``): an unreadable file, a report on another input log, a report
    whose reference scorer is not a model, or one that evaluated another checkpoint file.
    """
    report = Path(report)
    if not report.is_file():
        raise ArtifactError(f"--metrics {report}: no such file")
    try:
        payload = json.loads(report.read_text(encoding="utf-8"))
        context = payload.get("context", {})
        reference = payload["reference"]
        split = payload["split"]
        intervals = payload["scorers"][reference]["metrics"]
        coverage = payload["scorers"][reference].get("coverage", {})
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise ArtifactError(
            f"--metrics {report} is not an evaluation report (recsys evaluate's metrics.json): "
            f"{type(err).__name__} {err}"
        ) from err
    evaluated = context.get("checkpoint") or context.get("artifact")
    if not evaluated:
        raise ArtifactError(
            f"--metrics {report} evaluates no model (its reference scorer is {reference!r})"
        )
    other = context.get("checkpoint")
    if other and Path(other).exists() and not os.path.samefile(other, checkpoint):
        raise ArtifactError(
            f"--metrics {report} evaluates the checkpoint {other}, not --checkpoint {checkpoint}"
        )
    report_fingerprint = context.get("dataset_fingerprint")
    if report_fingerprint and fingerprint and report_fingerprint != fingerprint:
        raise ArtifactError(
            f"--metrics {report} was computed on another dataset (fingerprint "
            f"{report_fingerprint}) than the model was trained on ({fingerprint})"
        )
    metrics = {name: interval["mean"] for name, interval in intervals.items()}
    return {
        str(split): {
            "source": str(report),
            "protocol": payload.get("protocol"),
            "protocol_description": payload.get("protocol_description"),
            "num_users": payload.get("num_users"),
            "metrics": {**metrics, **coverage},
            "confidence_intervals": intervals,
        }
    }
