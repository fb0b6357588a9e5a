"""The ``recsys`` command: every subcommand documents itself, and user errors exit cleanly."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipelines.cli import COMMANDS

if TYPE_CHECKING:
    from tests.pipelines.conftest import RunRecsys, UserErrorCheck

SUBCOMMANDS = [
    "synth",
    "prepare",
    "train",
    "evaluate",
    "export",
    "demo",
    "load-features",
    "serve",
    "recommend",
    "health",
]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command: str, run_recsys: RunRecsys) -> None:
    result = run_recsys(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"recsys {command}" in result.stdout
    assert "--" in result.stdout


def test_top_level_help_lists_the_subcommands(run_recsys: RunRecsys) -> None:
    result = run_recsys("--help")
    assert result.returncode == 0
    for command in SUBCOMMANDS:
        assert command in result.stdout


def test_the_registry_holds_every_subcommand_with_its_docstring_summary() -> None:
    assert list(COMMANDS) == SUBCOMMANDS
    for name, entry in COMMANDS.items():
        doc = inspect.getdoc(entry.load()) or ""
        first_paragraph = " ".join(doc.split("\n\n")[0].split())
        assert entry.summary == first_paragraph, f"{name}: listing and docstring differ"


HEAVY_MODULES = ("torch", "pytorch_lightning", "matplotlib", "polars")


@pytest.mark.parametrize(
    ("args", "needed"),
    [
        (["--help"], []),
        (["recommend", "--help"], []),
        (["health", "--help"], []),
        (["serve", "--help"], ["polars", "torch"]),  # the server loads the model
    ],
)
def test_the_client_commands_and_the_listing_import_no_training_stack(
    args: list[str], needed: list[str]
) -> None:
    # In a fresh interpreter: what `recsys ARGS` has imported by the time it exits.
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from pipelines.cli import app\n"
        f"result = CliRunner().invoke(app, {args!r})\n"
        "assert result.exit_code == 0, result.output\n"
        f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.strip().splitlines()[-1]
    assert loaded == repr(needed), f"recsys {' '.join(args)} imported {loaded}"


def test_a_mistyped_command_names_the_closest_one(run_recsys: RunRecsys) -> None:
    result = run_recsys("recomend", "--user", "u1")
    assert result.returncode == 2
    assert "No such command 'recomend'. Did you mean 'recommend'?" in result.stderr


def test_synth_then_prepare_end_to_end(
    tmp_path: Path, run_recsys: RunRecsys, assert_user_error: UserErrorCheck
) -> None:
    log = tmp_path / "log.csv"
    result = run_recsys(
        "synth", "--users", "50", "--items", "20", "--events", "600", "--out", str(log)
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "data"
    result = run_recsys(
        "prepare", "--input", str(log), "--out", str(out), "--min-user-interactions", "3"
    )
    assert result.returncode == 0, result.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["num_interactions"] <= 600
    assert stats["filters"]["min_user_interactions"] == 3
    assert "prepared dataset" in result.stderr

    assert_user_error(
        run_recsys("prepare", "--input", str(log), "--out", str(out)), "already exists"
    )
    assert_user_error(
        run_recsys("synth", "--users", "5", "--events", "10", "--out", str(log)), "already exists"
    )


def test_prepare_errors_exit_2_without_traceback(
    tmp_path: Path, run_recsys: RunRecsys, assert_user_error: UserErrorCheck
) -> None:
    out = str(tmp_path / "out")
    assert_user_error(
        run_recsys("prepare", "--input", str(tmp_path / "missing.csv"), "--out", out),
        "input file not found",
    )
    log = tmp_path / "log.csv"
    log.write_text("uid,item_id\n1,2\n")
    assert_user_error(
        run_recsys("prepare", "--input", str(log), "--out", out),
        "column 'user_id' (--user-col) not found",
    )
    log.write_text("user_id,item_id\n1,2\n")
    assert_user_error(
        run_recsys("prepare", "--input", str(log), "--out", out, "--min-item-interactions", "5"),
        "no interactions left",
    )
    assert_user_error(
        run_recsys(
            "prepare",
            "--input",
            str(log),
            "--out",
            out,
            "--split",
            "temporal",
            "--test-cutoff",
            "tomorrow",
            "--validation-cutoff",
            "2024-01-01",
        ),
        "--test-cutoff 'tomorrow' is not a time",
    )
    assert not Path(out).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]  # nothing half-written


def test_bad_choice_is_rejected_by_the_parser(tmp_path: Path, run_recsys: RunRecsys) -> None:
    result = run_recsys("prepare", "--input", "x", "--out", "y", "--format", "xml")
    assert result.returncode == 2
    assert "--format" in result.stderr


def test_train_from_the_command_line_and_its_errors(
    tmp_path: Path, run_recsys: RunRecsys, assert_user_error: UserErrorCheck
) -> None:
    log = tmp_path / "log.parquet"
    data = tmp_path / "data"
    assert (
        run_recsys(
            "synth", "--users", "60", "--items", "30", "--events", "900", "--out", str(log)
        ).returncode
        == 0
    )
    assert run_recsys("prepare", "--input", str(log), "--out", str(data)).returncode == 0
    run = tmp_path / "run"
    config = Path(__file__).resolve().parents[2] / "pipelines" / "configs" / "demo.yaml"
    result = run_recsys(
        "train",
        "--data",
        str(data),
        "--out",
        str(run),
        "--config",
        str(config),
        "--max-epochs",
        "1",
        "--hidden-size",
        "16",
        "--accelerator",
        "cpu",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["model"]["hidden_size"] == 16  # the flag won over the YAML's 64
    assert summary["config"]["max_minutes"] == 2.0  # the YAML won over the default (15)
    assert (run / "checkpoints" / "best.ckpt").is_file()

    assert_user_error(run_recsys("train", "--data", str(data), "--out", str(run)), "already exists")
    assert_user_error(
        run_recsys("train", "--data", str(tmp_path), "--out", str(tmp_path / "r2")),
        "not a prepared dataset",
    )
    assert_user_error(
        run_recsys("train", "--data", str(data), "--out", str(tmp_path / "r3"), "--n-heads", "3"),
        "n_heads (3) must divide hidden_size (64)",
    )
    assert_user_error(
        run_recsys("train", "--data", str(data), "--out", str(tmp_path / "r4"), "--max-len", "0"),
        "max_len (--max-len)",
    )
    assert_user_error(
        run_recsys(
            "train", "--data", str(data), "--out", str(run), "--resume", "--config", str(config)
        ),
        "drop --config",
    )
    result = run_recsys("train", "--data", str(data), "--out", str(run), "--hiden-size", "3")
    assert result.returncode == 2 and "--hiden-size" in result.stderr  # unknown flag
