"""``recsys export`` end to end: export and ``--verify`` in a real process, a tampered artifact
refused with exit status 2, and user errors that name the flag and leave nothing at --out."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.pipelines.conftest import MainExit, MainRefusal, RunRecsys, UserErrorCheck


@pytest.fixture(scope="module")
def exported(
    trained: tuple[Path, Path], run_recsys: RunRecsys, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``recsys export --format torchscript`` of the checkpoint: the artifact and the run."""
    data, checkpoint = trained
    out = tmp_path_factory.mktemp("export-cli-artifact") / "artifact"
    result = run_recsys(
        "export", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out),
        "--format", "torchscript",
    )  # fmt: skip
    return out, result


@pytest.mark.slow
def test_export_writes_the_artifact_and_its_summary(
    exported: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, result = exported
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["items.parquet", "manifest.json", "model.ts"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model_version"] in result.stderr  # the summary table
    assert "scripted vs eager" in result.stderr


@pytest.mark.slow
def test_export_with_an_index_reports_its_recall(
    trained: tuple[Path, Path], run_recsys: RunRecsys, tmp_path: Path
) -> None:
    data, checkpoint = trained
    out = tmp_path / "artifact"
    result = run_recsys(
        "export", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out),
        "--index", "hnsw", "--min-recall", "0.9",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (out / "index.faiss").is_file()
    retrieval = json.loads((out / "manifest.json").read_text())["retrieval"]
    assert retrieval["kind"] == "hnsw" and retrieval["recall_at_10"] >= 0.9
    assert "hnsw index" in result.stderr and "recall@10" in result.stderr
    assert run_recsys("export", "--verify", str(out)).returncode == 0


@pytest.mark.slow
def test_verify_says_a_sound_artifact_is_sound(
    exported: tuple[Path, subprocess.CompletedProcess[str]], run_recsys: RunRecsys
) -> None:
    out, _ = exported
    result = run_recsys("export", "--verify", str(out))
    assert result.returncode == 0, result.stderr
    assert "is sound: checksums match" in " ".join(result.stderr.split())  # however it wraps


@pytest.mark.slow
def test_verify_refuses_a_tampered_artifact(
    exported: tuple[Path, subprocess.CompletedProcess[str]],
    tmp_path: Path,
    run_recsys: RunRecsys,
    assert_user_error: UserErrorCheck,
) -> None:
    out = tmp_path / "artifact"
    shutil.copytree(exported[0], out)
    with (out / "model.ts").open("r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert_user_error(run_recsys("export", "--verify", str(out)), "model.ts fails its checksum")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{data}", "--out", "{out}"], "error: --checkpoint required to export"),
        (["--checkpoint", "{ckpt}", "--out", "{out}"], "error: --data required to export"),
        (["--checkpoint", "{ckpt}", "--data", "{data}"], "error: --out required to export"),
        (["--checkpoint", "missing.ckpt", "--data", "{data}", "--out", "{out}"],
         "error: --checkpoint missing.ckpt: no such file"),
        (["--checkpoint", "{ckpt}", "--data", "{data}", "--out", "{out}", "--metrics", "m.json"],
         "error: --metrics m.json: no such file"),
        (["--checkpoint", "{ckpt}", "--data", "{data}", "--out", "{data}", "--overwrite"],
         "would replace --data"),
        (["--checkpoint", "{ckpt}", "--data", "{data}", "--out", "{out}", "--format", "onnx"],
         "(--format): expected one of 'torchscript', got 'onnx'"),
        (["--verify", "{out}", "--out", "{out}"], "error: --verify checks an existing artifact: "
         "drop --out"),
        (["--verify", "{out}"], "is not a model artifact: no such folder"),
        (["--checkpoint", "{ckpt}", "--data", "{data}", "--out", "{out}", "--index", "annoy"],
         "(--index): expected one of"),
        (["--checkpoint", "{ckpt}", "--data", "{data}", "--out", "{out}", "--min-recall", "1.5"],
         "min_recall (--min-recall)"),
    ],
)  # fmt: skip
def test_user_errors(
    trained: tuple[Path, Path],
    tmp_path: Path,
    refused_in_empty_dir: MainRefusal,
    args: list[str],
    message: str,
) -> None:
    data, checkpoint = trained
    out = tmp_path / "artifact"
    values = {"data": str(data), "ckpt": str(checkpoint), "out": str(out)}
    stderr = refused_in_empty_dir("export", *[a.format(**values) for a in args])
    assert message in stderr
    assert "Traceback" not in stderr
    assert not out.exists()


def test_existing_out_is_refused_naming_the_flag(
    trained: tuple[Path, Path], tmp_path: Path, main_exit: MainExit
) -> None:
    data, checkpoint = trained
    out = tmp_path / "artifact"
    out.mkdir()
    args = ["--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out)]
    stderr = main_exit("export", *args).err
    assert f"error: --out {out} already exists (pass --overwrite to replace it)" in stderr
    assert list(out.iterdir()) == []


def test_help_lists_every_option(monkeypatch: pytest.MonkeyPatch, main_exit: MainExit) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    text = main_exit("export", "--help", code=0).out
    for flag in ("--checkpoint", "--data", "--out", "--format", "--metrics", "--verify",
                 "--overwrite"):  # fmt: skip
        assert flag in text, flag
