"""Export -> artifact: the manifest, a round trip in a Python without this project, atomic
writes, ``verify_artifact``, and a loader that imports no training code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pytest
import torch

from recsys.data import load_prepared
from recsys.errors import ArtifactError, ConfigError, OutputExistsError
from recsys.export import (
    ARTIFACT_FORMAT,
    RecommenderModule,
    export_artifact,
    load_artifact,
    verify_artifact,
)
from recsys.export import exporter as exporter_module
from recsys.export.exporter import verification_histories
from recsys.io import sha256_file
from recsys.training import load_checkpoint

if TYPE_CHECKING:
    from tests.recsys.export.conftest import Exported

# Runs in a fresh interpreter (-I: no PYTHONPATH, no script folder on sys.path) that refuses to
# import anything of this project, as a server built on torch alone would.
_STANDALONE = """
import json, sys
import importlib.abc

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("recsys", "pipelines", "serving", "tests"):
            raise ImportError(f"project code imported: {name}")
        return None

sys.meta_path.insert(0, Refuse())
import torch

request = json.load(sys.stdin)
module = torch.jit.load(request["model"], map_location="cpu").eval()
items = torch.tensor(request["items"], dtype=torch.long)
exclude = torch.zeros(len(items), 0, dtype=torch.long)
with torch.inference_mode():
    indices, scores = module(items, request["k"], exclude, True)
    per_head, mean = module.explain(items)
print(json.dumps({
    "indices": indices.tolist(),
    "scores": scores.tolist(),
    "explain_shape": list(per_head.shape),
    "explain_sums": mean.sum(dim=1).tolist(),
    "max_len": module.max_len,
    "num_items": module.num_items,
    "project_modules": sorted(m for m in sys.modules if m.split(".")[0] in ("recsys", "pipelines")),
}))
"""


def test_manifest_describes_the_model(exported: Exported, tiny: dict[str, Any]) -> None:
    manifest = json.loads((exported.artifact / "manifest.json").read_text())
    stats = json.loads((exported.data / "stats.json").read_text())
    assert manifest["format_version"] == ARTIFACT_FORMAT
    assert re.fullmatch(r"sasrec-\d{8}T\d{6}Z-[0-9a-f]{8}", manifest["model_version"])
    assert manifest["model_version"].endswith(manifest["files"]["model.ts"]["sha256"][:8])
    assert manifest["max_len"] == tiny["max_len"]
    assert manifest["num_items"] == stats["num_items"]
    assert manifest["hyperparameters"]["model"]["hidden_size"] == tiny["hidden_size"]
    assert manifest["hyperparameters"]["train"]["max_epochs"] == tiny["max_epochs"]
    assert manifest["dataset"]["fingerprint"] == stats["input"]["fingerprint"]
    assert manifest["torch_version"] == torch.__version__
    assert manifest["created_at"].startswith(manifest["model_version"][7:11])
    validation = manifest["metrics"]["validation"]  # best.ckpt: the run's summary.json applies
    assert set(validation["metrics"]) >= {"ndcg@10", "hr@10"}
    assert "test" not in manifest["metrics"]  # no evaluation report was given
    for name in ("model.ts", "items.parquet"):
        assert manifest["files"][name]["sha256"] == sha256_file(exported.artifact / name)
    verification = manifest["verification"]
    assert verification["max_abs_score_diff"] <= 1e-5 and verification["top_k_identical"]
    assert verification["sequences"] > 100  # real test histories, not a token batch


def test_round_trip_without_the_project_gives_the_eager_top_k(
    exported: Exported, tiny: dict[str, Any], tmp_path: Path
) -> None:
    dataset = load_prepared(exported.data)
    model = load_checkpoint(exported.checkpoint).model.eval()
    items = verification_histories(dataset, model.max_len)  # real, some longer than max_len
    assert items.size(1) > model.max_len
    request = {"model": str(exported.artifact / "model.ts"), "items": items.tolist(), "k": 10}
    result = subprocess.run(
        [sys.executable, "-I", "-c", _STANDALONE],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["project_modules"] == []
    with torch.inference_mode():
        scores = model.score_next(items[:, -model.max_len :])
        scores.scatter_(1, items, float("-inf"))
        expected_scores, expected_indices = torch.topk(scores, 10, dim=1)
    assert answer["indices"] == expected_indices.tolist()
    assert np.allclose(answer["scores"], expected_scores.numpy(), atol=1e-5)
    assert answer["explain_shape"] == [len(items), tiny["n_heads"], model.max_len]
    assert np.allclose(answer["explain_sums"], 1.0, atol=1e-5)
    assert (answer["max_len"], answer["num_items"]) == (model.max_len, dataset.num_items)


class _Skewed(RecommenderModule):
    """Scripts fine but scores differently from the eager model: the export must catch it."""

    @torch.jit.export
    def scores(self, items: torch.Tensor) -> torch.Tensor:
        window = self._window(self._checked("items", items))
        return self._padded_scores(window)[:, : self.num_items + 1] * 1.001


def test_a_disagreeing_module_never_appears_at_out(
    exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exporter_module, "RecommenderModule", _Skewed)
    out = tmp_path / "artifact"
    with pytest.raises(ArtifactError, match="scripted module and the eager model disagree"):
        export_artifact(exported.checkpoint, exported.data, out)
    assert list(tmp_path.iterdir()) == []  # neither the artifact nor its staging folder


def test_a_partial_artifact_is_never_visible(
    exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []

    def fail_after_files(path: Path, **_: object) -> None:
        seen.append(sorted(p.name for p in Path(path).iterdir()))
        raise OSError("disk full")

    monkeypatch.setattr(exporter_module, "load_artifact", fail_after_files)
    out = tmp_path / "artifact"
    with pytest.raises(OSError, match="disk full"):
        export_artifact(exported.checkpoint, exported.data, out)
    assert seen == [["items.parquet", "manifest.json", "model.ts"]]  # failed when all written
    assert list(tmp_path.iterdir()) == []


def _occupied(tmp_path: Path) -> Path:
    out = tmp_path / "artifact"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    return out


def test_existing_out_is_refused_without_overwrite(exported: Exported, tmp_path: Path) -> None:
    out = _occupied(tmp_path)
    with pytest.raises(OutputExistsError, match=r"--out .* already exists \(pass --overwrite"):
        export_artifact(exported.checkpoint, exported.data, out)
    assert (out / "keep.txt").read_text() == "mine"


def test_overwrite_replaces_an_existing_out(exported: Exported, tmp_path: Path) -> None:
    out = _occupied(tmp_path)
    export_artifact(exported.checkpoint, exported.data, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["items.parquet", "manifest.json", "model.ts"]


def test_overwrite_never_replaces_the_data(exported: Exported) -> None:
    with pytest.raises(ConfigError, match="--out .* would replace --data"):
        export_artifact(exported.checkpoint, exported.data, exported.data, overwrite=True)
    assert load_prepared(exported.data).num_items > 0


def test_verify_rechecks_the_recorded_answer(exported: Exported) -> None:
    summary = verify_artifact(exported.artifact)
    assert summary["model_version"] == load_artifact(exported.artifact).model_version
    assert summary["smoke"]["top_k_identical"] and summary["smoke"]["max_abs_score_diff"] <= 1e-5


@pytest.mark.parametrize("name", ["model.ts", "items.parquet"])
def test_verify_refuses_a_tampered_file(artifact_copy: Path, name: str) -> None:
    with (artifact_copy / name).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError, match="fails its checksum"):
        verify_artifact(artifact_copy)


def test_importing_the_loader_does_not_import_training_code() -> None:
    code = (
        "import sys, recsys.export; "
        "print(sorted(m for m in sys.modules if m.startswith(('pytorch_lightning', "
        "'lightning', 'recsys.training', 'recsys.evaluation'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


def test_items_table_holds_string_ids(exported: Exported) -> None:
    table = pl.read_parquet(exported.artifact / "items.parquet")
    assert table.schema["item_id"] == pl.String
    assert table.get_column("item_idx").to_list() == list(range(1, table.height + 1))
    assert table.get_column("item_id")[0].startswith("sku-")
