"""Shared fixtures of the export tests: a tiny trained checkpoint and its exported artifact."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from recsys.data import CleaningConfig, PrepareConfig, prepare_dataset, write_prepared
from recsys.data.synthetic import SynthConfig, generate_log
from recsys.export import export_artifact
from recsys.training import TrainConfig, train

TINY = {
    "hidden_size": 16,
    "n_heads": 2,
    "n_blocks": 2,
    "max_len": 8,
    "batch_size": 64,
    "max_epochs": 2,
    "accelerator": "cpu",
    "devices": 1,
}


@dataclass(frozen=True)
class Exported:
    data: Path
    checkpoint: Path
    artifact: Path


@pytest.fixture
def tiny() -> dict[str, Any]:
    """The training config of the exported model."""
    return dict(TINY)


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """A synthetic dataset with string item ids, a 2-epoch tiny model, and its artifact."""
    root = tmp_path_factory.mktemp("export")
    log = generate_log(SynthConfig(n_users=200, n_items=120, n_events=4_000, seed=4))
    log = log.with_columns(("sku-" + log["item_id"].cast(str)).alias("item_id"))
    config = PrepareConfig(cleaning=CleaningConfig(min_user_interactions=3))
    data = write_prepared(prepare_dataset(log, config), root / "data")
    train(data, root / "run", TrainConfig.build(TINY), progress=False)
    checkpoint = root / "run" / "checkpoints" / "best.ckpt"
    artifact = export_artifact(checkpoint, data, root / "artifact")
    return Exported(data=data, checkpoint=checkpoint, artifact=artifact)
