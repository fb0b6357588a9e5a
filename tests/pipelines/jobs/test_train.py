"""``recsys train`` in a real process: flags over a YAML config, user errors that exit with status
2, and ``--strategy ddp`` with two processes on the CPU (gloo) training one run, written once.

What a multi-GPU run relies on, checked where CI can run it: the length-bucketed sampler shards
batches by rank, validation metrics are synced, and only rank 0 writes the run folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from recsys.training import SASRecModule

if TYPE_CHECKING:
    from tests.conftest import TinyRuns
    from tests.pipelines.conftest import RunRecsys, UserErrorCheck

DEMO_CONFIG = Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "demo.yaml"


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


@dataclass(frozen=True)
class TrainedRun:
    root: Path
    data: Path
    run: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def trained_run(run_recsys: RunRecsys, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """``recsys train --config demo.yaml`` with flags on a small synthetic log, for one epoch."""
    root = tmp_path_factory.mktemp("train")
    log = root / "log.parquet"
    data = root / "data"
    assert (
        run_recsys(
            "synth", "--users", "60", "--items", "30", "--events", "900", "--out", str(log)
        ).returncode
        == 0
    )
    assert run_recsys("prepare", "--input", str(log), "--out", str(data)).returncode == 0
    run = root / "run"
    result = run_recsys(
        "train",
        "--data",
        str(data),
        "--out",
        str(run),
        "--config",
        str(DEMO_CONFIG),
        "--max-epochs",
        "1",
        "--hidden-size",
        "16",
        "--accelerator",
        "cpu",
    )
    return TrainedRun(root=root, data=data, run=run, result=result)


def test_train_from_the_command_line_flags_over_the_yaml(trained_run: TrainedRun) -> None:
    assert trained_run.result.returncode == 0, trained_run.result.stderr
    run = trained_run.run
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["model"]["hidden_size"] == 16  # the flag won over the YAML's 64
    assert summary["config"]["max_minutes"] == 2.0  # the YAML won over the default (15)
    assert (run / "checkpoints" / "best.ckpt").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{data}", "--out", "{run}"], "already exists"),
        (["--data", "{root}", "--out", "{tmp}/r2"], "not a prepared dataset"),
        (
            ["--data", "{data}", "--out", "{tmp}/r3", "--n-heads", "3"],
            "n_heads (3) must divide hidden_size (64)",
        ),
        (["--data", "{data}", "--out", "{tmp}/r4", "--max-len", "0"], "max_len (--max-len)"),
        (
            ["--data", "{data}", "--out", "{run}", "--resume", "--config", "{config}"],
            "drop --config",
        ),
        (
            ["--data", "{data}", "--out", "{tmp}/r5", "--hidden-size", "65536"],
            "the largest part is the parameters",
        ),
    ],
    ids=["existing-run", "not-a-dataset", "heads", "max-len", "resume-with-config", "too-big"],
)
def test_train_user_errors(
    trained_run: TrainedRun,
    tmp_path: Path,
    run_recsys: RunRecsys,
    assert_user_error: UserErrorCheck,
    args: list[str],
    message: str,
) -> None:
    values = {
        "data": str(trained_run.data),
        "run": str(trained_run.run),
        "root": str(trained_run.root),
        "config": str(DEMO_CONFIG),
        "tmp": str(tmp_path),
    }
    assert_user_error(run_recsys("train", *[a.format(**values) for a in args]), message)


def test_an_unknown_train_flag_is_refused(trained_run: TrainedRun, run_recsys: RunRecsys) -> None:
    data, run = str(trained_run.data), str(trained_run.run)
    result = run_recsys("train", "--data", data, "--out", run, "--hiden-size", "3")
    assert result.returncode == 2 and "--hiden-size" in result.stderr  # unknown flag


def test_resuming_from_a_truncated_checkpoint_is_a_user_error(
    trained_run: TrainedRun,
    tmp_path: Path,
    run_recsys: RunRecsys,
    assert_user_error: UserErrorCheck,
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run.run, run)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # a copy cut short
    result = run_recsys("train", "--data", str(trained_run.data), "--out", str(run), "--resume")
    assert_user_error(result, "is not a readable checkpoint")
    assert "--overwrite" in result.stderr
