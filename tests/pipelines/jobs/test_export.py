"""``recsys export`` end to end: export and ``--verify`` in a real process, a tampered artifact
refused with exit status 2, and user errors that name the flag and leave nothing at --out."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.conftest import TinyRuns
    from tests.pipelines.conftest import RunRecsys, UserErrorCheck

from pipelines import cli

TINY = {"n_heads": 1, "n_blocks": 1, "max_len": 10, "max_epochs": 1}


@pytest.fixture(scope="module")
def trained(
    tiny_runs: type[TinyRuns], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A prepared synthetic dataset and the best checkpoint of a 1-epoch tiny model on it."""
    root = tmp_path_factory.mktemp("export-cli")
    data = tiny_runs.prepared(root / "data", n_users=150, n_items=80, n_events=3_000, seed=3)
    return data, tiny_runs.trained(data, root / "run", **TINY)


@pytest.mark.slow
def test_export_verify_and_a_tampered_artifact(
    trained: tuple[Path, Path],
    tmp_path: Path,
    run_recsys: RunRecsys,
    assert_user_error: UserErrorCheck,
) -> None:
    data, checkpoint = trained
    out = tmp_path / "artifact"
    result = run_recsys(
        "export", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out),
        "--format", "torchscript",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["items.parquet", "manifest.json", "model.ts"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model_version"] in result.stderr  # the summary table
    assert "scripted vs eager" in result.stderr

    result = run_recsys("export", "--verify", str(out))
    assert result.returncode == 0, result.stderr
    assert "is sound: checksums match" in result.stderr

    with (out / "model.ts").open("r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert_user_error(run_recsys("export", "--verify", str(out)), "model.ts fails its checksum")


def _main_error(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    """Run ``recsys`` in this process; return stderr after the expected exit with status 2."""
    monkeypatch.setattr(sys, "argv", ["recsys", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    return capsys.readouterr().err


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
         "Invalid value for '--format'"),
        (["--verify", "{out}", "--out", "{out}"], "error: --verify checks an existing artifact: "
         "drop --out"),
        (["--verify", "{out}"], "is not a model artifact: no such folder"),
    ],
)  # fmt: skip
def test_user_errors(
    trained: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    data, checkpoint = trained
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "artifact"
    values = {"data": str(data), "ckpt": str(checkpoint), "out": str(out)}
    stderr = _main_error(["export", *[a.format(**values) for a in args]], monkeypatch, capsys)
    assert message in stderr
    assert "Traceback" not in stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder either


def test_existing_out_is_refused_naming_the_flag(
    trained: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, checkpoint = trained
    out = tmp_path / "artifact"
    out.mkdir()
    args = ["export", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out)]
    stderr = _main_error(args, monkeypatch, capsys)
    assert f"error: --out {out} already exists (pass --overwrite to replace it)" in stderr
    assert list(out.iterdir()) == []


def test_help_lists_every_option(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(sys, "argv", ["recsys", "export", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--checkpoint", "--data", "--out", "--format", "--metrics", "--verify",
                 "--overwrite"):  # fmt: skip
        assert flag in text, flag
