"""``recsys prepare`` in a real process: a dataset with its stats from a synthetic log, and user
errors that exit with status 2, name the problem, and leave nothing half-written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.pipelines.conftest import RunRecsys, UserErrorCheck


@pytest.fixture(scope="module")
def prepared(
    synth_log: Path, run_recsys: RunRecsys, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``recsys prepare`` of the synthetic log (users with >= 3 events): the folder and the run."""
    out = tmp_path_factory.mktemp("prepare") / "data"
    result = run_recsys(
        "prepare", "--input", str(synth_log), "--out", str(out), "--min-user-interactions", "3"
    )
    return out, result


def test_prepare_writes_the_dataset_and_its_stats(
    prepared: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, result = prepared
    assert result.returncode == 0, result.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["num_interactions"] <= 600
    assert stats["filters"]["min_user_interactions"] == 3
    assert "prepared dataset" in result.stderr


def test_prepare_refuses_to_replace_an_existing_dataset(
    synth_log: Path,
    prepared: tuple[Path, subprocess.CompletedProcess[str]],
    run_recsys: RunRecsys,
    assert_user_error: UserErrorCheck,
) -> None:
    out, _ = prepared
    assert_user_error(
        run_recsys("prepare", "--input", str(synth_log), "--out", str(out)), "already exists"
    )


@pytest.mark.parametrize(
    ("log_text", "args", "message"),
    [
        (None, ["--input", "{tmp}/missing.csv"], "input file not found"),
        ("uid,item_id\n1,2\n", ["--input", "{log}"], "column 'user_id' (--user-col) not found"),
        (
            "user_id,item_id\n1,2\n",
            ["--input", "{log}", "--min-item-interactions", "5"],
            "no interactions left",
        ),
        (
            "user_id,item_id\n1,2\n",
            ["--input", "{log}", "--split", "temporal", "--test-cutoff", "tomorrow"]
            + ["--validation-cutoff", "2024-01-01"],
            "--test-cutoff 'tomorrow' is not a time",
        ),
    ],
    ids=["missing-input", "missing-column", "nothing-left", "bad-cutoff"],
)
def test_prepare_errors_exit_2_without_traceback(
    tmp_path: Path,
    run_recsys: RunRecsys,
    assert_user_error: UserErrorCheck,
    log_text: str | None,
    args: list[str],
    message: str,
) -> None:
    out = tmp_path / "out"
    log = tmp_path / "log.csv"
    if log_text is not None:
        log.write_text(log_text)
    values = {"tmp": str(tmp_path), "log": str(log)}
    assert_user_error(
        run_recsys("prepare", *[a.format(**values) for a in args], "--out", str(out)), message
    )
    assert not out.exists()
    written = [] if log_text is None else ["log.csv"]
    assert [p.name for p in tmp_path.iterdir()] == written  # nothing half-written


def test_bad_choice_is_rejected_by_the_parser(tmp_path: Path, run_recsys: RunRecsys) -> None:
    result = run_recsys("prepare", "--input", "x", "--out", "y", "--format", "xml")
    assert result.returncode == 2
    assert "--format" in result.stderr


def test_an_output_the_system_refuses_is_a_user_error(
    synth_log: Path, tmp_path: Path, run_recsys: RunRecsys, assert_user_error: UserErrorCheck
) -> None:
    """Where the folder cannot be written (here: under a file; a read-only mount is the same
    OSError), the user reads why, with no traceback, and nothing is left behind."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "data"
    result = run_recsys("prepare", "--input", str(synth_log), "--out", str(out))
    assert_user_error(result, f"error: File exists: {blocker}")  # the path that blocks it
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]
