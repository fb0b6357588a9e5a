"""``recsys evaluate`` end to end: a freshly trained checkpoint against the baselines under both
protocols, and user errors that exit with status 2, a message naming the problem, no traceback
and nothing written at --out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.conftest import TinyRuns
    from tests.pipelines.conftest import MainExit, MainRefusal, RunRecsys, UserErrorCheck


@pytest.mark.slow
def test_checkpoint_against_baselines_full_ranking(
    trained: tuple[Path, Path], tmp_path: Path, run_recsys: RunRecsys
) -> None:
    data, checkpoint = trained
    out = tmp_path / "report"
    result = run_recsys(
        "evaluate", "--data", str(data), "--checkpoint", str(checkpoint),
        "--compare-baselines", "--k", "5,10", "--resamples", "200", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("metrics.json", "report.md", "metrics_at_k.png", "comparison.png"):
        assert (out / name).is_file(), name
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["protocol"] == "full" and payload["split"] == "test"
    assert payload["scorer_names"] == ["sasrec", "most-popular", "markov"]
    assert set(payload["scorers"]) == {"sasrec", "most-popular", "markov"}
    assert [c["other"] for c in payload["comparisons"]] == ["most-popular", "markov"]
    assert payload["context"]["checkpoint"] == str(checkpoint)
    assert "sasrec" in result.stderr and "HR@10" in result.stderr  # the summary table


@pytest.mark.slow
def test_checkpoint_against_baselines_sampled(
    trained: tuple[Path, Path], tmp_path: Path, run_recsys: RunRecsys
) -> None:
    data, checkpoint = trained
    out = tmp_path / "report"
    result = run_recsys(
        "evaluate", "--data", str(data), "--checkpoint", str(checkpoint),
        "--baseline", "most-popular", "--baseline", "markov", "--split", "validation",
        "--protocol", "sampled", "--negatives", "30", "--seed", "1", "--resamples", "200",
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["protocol"] == "sampled" and payload["num_candidates"] == 31
    assert payload["settings"] == {"negative_sampling": "uniform", "num_negatives": 30, "seed": 1}
    assert len(payload["comparisons"]) == 2
    assert "sampled" in (out / "report.md").read_text()


@pytest.mark.slow
def test_a_user_sample_is_reported_as_one(
    trained: tuple[Path, Path], tmp_path: Path, run_recsys: RunRecsys
) -> None:
    data, checkpoint = trained
    out = tmp_path / "report"
    result = run_recsys(
        "evaluate", "--data", str(data), "--checkpoint", str(checkpoint), "--baseline", "markov",
        "--users", "25", "--seed", "2", "--resamples", "100", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["num_users"] == 25
    assert payload["settings"]["users_sampled"] == 25
    assert payload["settings"]["users_in_split"] > 25
    assert "a uniform sample (seed 2)" in (out / "report.md").read_text()


@pytest.mark.slow
def test_an_incomplete_artifact_is_refused_in_a_real_process(
    trained: tuple[Path, Path],
    tmp_path: Path,
    run_recsys: RunRecsys,
    assert_user_error: UserErrorCheck,
) -> None:
    data, _ = trained
    out = tmp_path / "report"
    assert_user_error(
        run_recsys("evaluate", "--data", str(data), "--artifact", str(tmp_path), "--out", str(out)),
        "is not a complete model artifact: manifest.json is missing",
    )
    assert not out.exists()


@pytest.mark.slow
def test_an_existing_out_is_refused_in_a_real_process(
    trained: tuple[Path, Path],
    tmp_path: Path,
    run_recsys: RunRecsys,
    assert_user_error: UserErrorCheck,
) -> None:
    data, _ = trained
    out = tmp_path / "report"
    out.mkdir()
    assert_user_error(
        run_recsys("evaluate", "--data", str(data), "--baseline", "markov", "--out", str(out)),
        "already exists (pass --overwrite",
    )
    assert list(out.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "nothing to evaluate: give --checkpoint, --artifact or --baseline"),
        (["--baseline", "random"],
         "invalid flags: baseline (--baseline): expected one of 'most-popular' or 'markov', "
         "got 'random'"),
        (["--baseline", "markov", "--k", "5,ten"],
         "invalid flags: k (--k): expected comma-separated integers"),
        (["--baseline", "markov", "--k", "0"],
         "invalid flags: k (--k): needs positive list lengths"),
        (["--checkpoint", "missing.ckpt"], "--checkpoint missing.ckpt: no such file"),
        (["--baseline", "markov", "--split", "validation", "--protocol", "sampled",
          "--negatives", "149"], "--negatives 149 is too many"),
        (["--baseline", "markov", "--negatives", "0"],
         "invalid flags: negatives (--negatives): must be >= 1"),
        (["--baseline", "markov", "--confidence", "95"],
         "invalid flags: confidence (--confidence): must be in (0.0, 1.0)"),
        (["--checkpoint", "x", "--artifact", "y"], "--checkpoint and --artifact exclude each"),
        (["--baseline", "markov", "--device", "gpu0"], "--device 'gpu0' is not a device"),
    ],
)  # fmt: skip
def test_user_errors(
    trained: tuple[Path, Path],
    tmp_path: Path,
    refused_in_empty_dir: MainRefusal,
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "report"
    stderr = refused_in_empty_dir("evaluate", "--data", str(trained[0]), *extra, "--out", str(out))
    assert f"error: {message}" in stderr
    assert not out.exists()


@pytest.fixture(scope="module")
def other_data(tiny_runs: type[TinyRuns], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared dataset of another catalogue (60 items) than the trained model's (150)."""
    root = tmp_path_factory.mktemp("evaluate-other")
    return tiny_runs.prepared(root / "other", n_users=200, n_items=60, n_events=4_000, seed=9)


@pytest.mark.slow
def test_checkpoint_of_another_dataset_is_refused(
    trained: tuple[Path, Path], other_data: Path, tmp_path: Path, main_exit: MainExit
) -> None:
    _, checkpoint = trained
    out = tmp_path / "report"
    args = ["--data", str(other_data), "--checkpoint", str(checkpoint), "--out", str(out)]
    assert "catalogue of 150 items, but --data has" in main_exit("evaluate", *args).err
    assert not out.exists()


@pytest.mark.slow
def test_a_file_that_is_not_a_checkpoint_is_refused(
    other_data: Path, tmp_path: Path, main_exit: MainExit
) -> None:
    out = tmp_path / "report"
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    args = ["--data", str(other_data), "--checkpoint", str(garbage), "--out", str(out)]
    assert "is not a SASRec training checkpoint" in main_exit("evaluate", *args).err
    assert not out.exists()


def test_missing_dataset_is_a_user_error(tmp_path: Path, main_exit: MainExit) -> None:
    args = [
        "evaluate",
        "--data",
        str(tmp_path / "nope"),
        "--baseline",
        "markov",
        "--out",
        str(tmp_path / "r"),
    ]
    assert "is not a prepared dataset" in main_exit(*args).err


def test_help_lists_every_option(monkeypatch: pytest.MonkeyPatch, main_exit: MainExit) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    text = main_exit("evaluate", "--help", code=0).out
    assert "recsys evaluate" in text
    for flag in (
        "--checkpoint",
        "--artifact",
        "--baseline",
        "--compare-baselines",
        "--split",
        "--protocol",
        "--k",
        "--negatives",
        "--negative-sampling",
        "--out",
        "--overwrite",
    ):
        assert flag in text, flag
