"""What the manifest records besides the model: the test metrics of an evaluation report of the
exported checkpoint, and refusals of reports that evaluated no model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipelines.jobs.evaluate import EvaluateConfig, run_evaluate
from recsys.errors import ArtifactError
from recsys.export import export_artifact

if TYPE_CHECKING:
    from tests.recsys.export.conftest import CheckpointReport, Exported


def test_the_checkpoints_report_feeds_the_manifests_test_metrics(
    exported: Exported, checkpoint_report: CheckpointReport, tmp_path: Path
) -> None:
    out = tmp_path / "with-metrics"
    export_artifact(exported.checkpoint, exported.data, out, metrics=checkpoint_report.metrics)
    test = json.loads((out / "manifest.json").read_text())["metrics"]["test"]
    assert test["protocol"] == "full"
    means = checkpoint_report.report.results[0].means
    assert test["metrics"]["ndcg@10"] == pytest.approx(means["ndcg@10"])


def test_a_report_that_evaluates_no_model_is_refused(exported: Exported, tmp_path: Path) -> None:
    baseline_only = EvaluateConfig(k=(5, 10), resamples=50, baseline=["most-popular"])
    run_evaluate(baseline_only, exported.data, tmp_path / "pop")
    with pytest.raises(ArtifactError, match="evaluates no model"):
        export_artifact(
            exported.checkpoint,
            exported.data,
            tmp_path / "x",
            metrics=tmp_path / "pop" / "metrics.json",
        )
