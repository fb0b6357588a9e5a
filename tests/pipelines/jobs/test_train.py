"""``recsys train --strategy ddp``: two processes on the CPU (gloo) train one run, written once.

What a multi-GPU run relies on, checked where CI can run it: the length-bucketed sampler shards
batches by rank, validation metrics are synced, and only rank 0 writes the run folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from recsys.training import SASRecModule

if TYPE_CHECKING:
    from tests.conftest import TinyRuns
    from tests.pipelines.conftest import RunRecsys


@pytest.mark.slow
def test_two_process_ddp_trains_one_run(
    tmp_path: Path, tiny_runs: type[TinyRuns], run_recsys: RunRecsys
) -> None:
    data = tiny_runs.prepared(tmp_path / "data", n_users=200, n_items=60, n_events=3000, seed=2)
    run = tmp_path / "run"
    result = run_recsys(
        "train", "--data", str(data), "--out", str(run),
        "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
        "--max-epochs", "2", "--hidden-size", "16", "--max-len", "20", "--batch-size", "32",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["strategy"] == "ddp"
    assert summary["config"]["devices"] == 2
    assert summary["epochs_trained"] == 2
    assert 0.0 < summary["best_validation"]["val/ndcg@10"] <= 1.0
    assert len(list((run / "logs").glob("**/metrics.csv"))) == 1  # rank 0 logs, once
    best = run / "checkpoints" / "best.ckpt"
    module = SASRecModule.load_from_checkpoint(best, map_location="cpu")
    assert module.model.config.hidden_size == 16
