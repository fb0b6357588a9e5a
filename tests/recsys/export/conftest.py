"""Shared fixtures of the export tests: a tiny trained checkpoint and its exported artifact."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

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
