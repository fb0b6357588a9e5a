"""An artifact as an evaluation scorer: the same numbers as its checkpoint, and refused on a
dataset it was not trained on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from pipelines.jobs.evaluate import EvaluateConfig, run_evaluate
from recsys.errors import DataError

if TYPE_CHECKING:
    from tests.recsys.export.conftest import CheckpointReport, Exported


def test_evaluating_the_artifact_matches_the_checkpoint(
    exported: Exported, checkpoint_report: CheckpointReport, tmp_path: Path
) -> None:
    by_checkpoint = checkpoint_report.report
    by_artifact = run_evaluate(
        checkpoint_report.settings, exported.data, tmp_path / "art", artifact=exported.artifact
    )
    assert np.array_equal(by_artifact.results[0].ranks, by_checkpoint.results[0].ranks)
    assert by_artifact.results[0].means == by_checkpoint.results[0].means
    payload = json.loads((tmp_path / "art" / "metrics.json").read_text())
    assert payload["context"]["artifact"] == str(exported.artifact)


def test_an_artifact_of_another_dataset_is_refused_by_evaluate(
    exported: Exported, artifact_copy: Path, tmp_path: Path
) -> None:
    manifest = json.loads((artifact_copy / "manifest.json").read_text())
    manifest["dataset"]["fingerprint"] = "sha256-rows:another"
    (artifact_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="--artifact was trained on another input log"):
        run_evaluate(
            EvaluateConfig(resamples=10), exported.data, tmp_path / "r", artifact=artifact_copy
        )
