"""Shared fixtures of the export tests: a tiny trained checkpoint, its exported artifact, a copy
to damage, and an evaluation report of the checkpoint."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipelines.jobs.evaluate import EvaluateConfig, run_evaluate
from recsys.evaluation import EvaluationReport
from recsys.export import export_artifact

if TYPE_CHECKING:
    from tests.conftest import TinyRuns

TINY = {"n_heads": 2, "n_blocks": 2, "max_len": 8, "max_epochs": 2}


@dataclass(frozen=True)
class Exported:
    data: Path
    checkpoint: Path
    artifact: Path


@pytest.fixture
def tiny(tiny_runs: type[TinyRuns]) -> dict[str, Any]:
    """The training config of the exported model."""
    return {**tiny_runs.TRAINING, **TINY}


@pytest.fixture(scope="session")
def exported(tiny_runs: type[TinyRuns], tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """A synthetic dataset with string item ids, a 2-epoch tiny model, and its artifact."""
    root = tmp_path_factory.mktemp("export")
    data = tiny_runs.prepared(
        root / "data", n_users=200, n_items=120, n_events=4_000, seed=4, string_ids=True
    )
    checkpoint = tiny_runs.trained(data, root / "run", **TINY)
    artifact = export_artifact(checkpoint, data, root / "artifact")
    return Exported(data=data, checkpoint=checkpoint, artifact=artifact)


@pytest.fixture
def artifact_copy(exported: Exported, tmp_path: Path) -> Path:
    """A copy of the exported artifact that the test may damage."""
    target = tmp_path / "artifact"
    shutil.copytree(exported.artifact, target)
    return target


@dataclass(frozen=True)
class CheckpointReport:
    settings: EvaluateConfig
    report: EvaluationReport
    metrics: Path
    """The report's ``metrics.json``."""


@pytest.fixture(scope="session")
def checkpoint_report(
    exported: Exported, tmp_path_factory: pytest.TempPathFactory
) -> CheckpointReport:
    """``recsys evaluate`` of the exported checkpoint (full ranking, K 5 and 10)."""
    settings = EvaluateConfig(k=(5, 10), resamples=50)
    out = tmp_path_factory.mktemp("export-report") / "ckpt"
    report = run_evaluate(settings, exported.data, out, checkpoint=exported.checkpoint)
    return CheckpointReport(settings=settings, report=report, metrics=out / "metrics.json")


@pytest.fixture(scope="session")
def indexed(exported: Exported, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The exported checkpoint again, as an artifact with an IVF retrieval index."""
    out = tmp_path_factory.mktemp("export-indexed") / "artifact"
    return export_artifact(exported.checkpoint, exported.data, out, index="ivf")
