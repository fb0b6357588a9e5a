"""The approximate retrieval index: the rule that picks one, recall tuned to its threshold,
exclusions applied exactly, and an indexed artifact that answers as the exact one does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.errors import ArtifactError, ConfigError
from recsys.export import INDEX_FILE, load_artifact, verify_artifact
from recsys.export import retrieval as R
from recsys.export.exporter import verification_histories
from recsys.io import write_json
from tests.recsys.export.conftest import Exported


@pytest.fixture(scope="module")
def clustered() -> tuple[np.ndarray, np.ndarray]:
    """3,000 item vectors in 30 clusters and 200 user vectors near them: [V, H], [B, H]."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 16))
    items = centres[rng.integers(0, 30, 3000)] + 0.3 * rng.normal(size=(3000, 16))
    users = centres[rng.integers(0, 30, 200)] + 0.3 * rng.normal(size=(200, 16))
    return items.astype(np.float32), users.astype(np.float32)


def test_auto_builds_an_index_only_for_large_catalogues() -> None:
    assert R.resolve_kind("auto", R.AUTO_INDEX_ITEMS - 1) == "exact"
    assert R.resolve_kind("auto", R.AUTO_INDEX_ITEMS) == "ivf"
    assert R.resolve_kind("hnsw", 10) == "hnsw"
    with pytest.raises(ConfigError, match="--index 'annoy'"):
        R.resolve_kind("annoy", 10)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_search_is_widened_until_the_recall_target_is_met(
    kind: str, clustered: tuple[np.ndarray, np.ndarray]
) -> None:
    items, users = clustered
    index = R.build_index(kind, items)
    tuned = R.tune_breadth(index, users, items, min_recall=0.99)
    assert tuned["recall_at_10"] >= 0.99
    assert tuned["recall_at_10"] == R.recall_at_k(index, users, R.exact_top(users, items, 10))
    recalls = [step["recall"] for step in tuned["tried"]]
    assert recalls[-1] >= 0.99 and all(r < 0.99 for r in recalls[:-1])


def test_a_recall_out_of_reach_fails_naming_the_flags(
    clustered: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    items, users = clustered
    index = R.build_index("ivf", items)
    monkeypatch.setattr(R, "MAX_BREADTH", 1)
    with pytest.raises(ArtifactError, match=r"below --min-recall 1.0: use --index exact"):
        R.tune_breadth(index, users, items, min_recall=1.0)


def _exact_filtered(users: np.ndarray, items: np.ndarray, k: int, skip: set[int]) -> list[int]:
    scores = items @ users
    for index in skip:
        scores[index - 1] = -np.inf
    return [int(r) + 1 for r in np.argsort(-scores, kind="stable")[:k]]


def test_exclusions_are_exact_even_when_the_search_comes_back_short(
    clustered: tuple[np.ndarray, np.ndarray],
) -> None:
    items, users = clustered
    index = R.build_index("ivf", items)
    R.set_breadth(index, index.nlist)  # every cell: the search itself is exact
    retrieval = R.ApproximateRetrieval(index, items)
    best = R.exact_top(users[:2], items, 300) + 1  # item indices
    exclude = [best[0, :5].tolist(), best[1, :300].tolist()]  # row 1: far more than fetched
    R.set_breadth(index, 1)  # one cell: row 1's over-fetch is nearly all excluded
    found, scores = retrieval.top_k(users[:2], 10, exclude)
    for row in range(2):
        assert not set(found[row]) & set(exclude[row])
        assert len(found[row]) == 10 and scores[row] == sorted(scores[row], reverse=True)
    assert found[1] == _exact_filtered(users[1], items, 10, set(exclude[1]))


def test_an_indexed_artifact_records_its_recall_and_checksums_the_index(
    exported: Exported, indexed: Path
) -> None:
    manifest = json.loads((indexed / "manifest.json").read_text())
    entry = manifest["retrieval"]
    assert entry["kind"] == "ivf" and entry["library"].startswith("faiss ")
    assert entry["recall_at_10"] >= entry["min_recall"] == 0.95
    assert INDEX_FILE in manifest["files"]
    exact = json.loads((exported.artifact / "manifest.json").read_text())
    assert exact["retrieval"] == {
        "kind": "exact",
        "rule": "--index auto (an index from 200,000 items on; this catalogue has "
        f"{exact['num_items']:,})",
    }
    assert INDEX_FILE not in exact["files"]
    assert verify_artifact(indexed)["checksums"][INDEX_FILE] == "ok"


def test_an_indexed_artifact_answers_as_the_exact_one(exported: Exported, indexed: Path) -> None:
    artifact = load_artifact(indexed)
    assert artifact.retrieval is not None
    from recsys.data import load_prepared

    histories = verification_histories(load_prepared(exported.data), artifact.max_len, 64)
    exclude = histories[:, -3:]  # each row's three newest items
    want, want_scores = artifact.module(histories, 10, exclude, False)
    vectors = artifact.module.user_vectors(histories).numpy()
    R.set_breadth(artifact.retrieval.index, artifact.retrieval.index.nlist)  # exhaustive
    found, scores = artifact.retrieval.top_k(vectors, 10, exclude.tolist())
    assert found == want.tolist()
    assert np.allclose(scores, want_scores.numpy(), atol=1e-5)
    with torch.no_grad():
        full = artifact.module.scores(histories[:4])[:, 1:]
    assert np.allclose(full.numpy(), vectors[:4] @ artifact.module.item_vectors().numpy().T,
                       atol=1e-5)  # fmt: skip


def test_a_tampered_index_is_refused(indexed: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "artifact"
    shutil.copytree(indexed, copy)
    with (copy / INDEX_FILE).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError, match=f"{INDEX_FILE} fails its checksum"):
        load_artifact(copy)
    (copy / INDEX_FILE).unlink()
    with pytest.raises(ArtifactError, match="is missing"):
        load_artifact(copy)


def test_an_index_without_a_recorded_breadth_is_refused(indexed: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "artifact"
    shutil.copytree(indexed, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["retrieval"]["breadth"]
    write_json(copy / "manifest.json", manifest)
    with pytest.raises(ArtifactError, match="no search breadth"):
        load_artifact(copy)
