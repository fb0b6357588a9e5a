"""The artifact loader: ids and popularity as the server reads them, and refusals of damaged or
unknown artifacts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from recsys.data import PreparedDataset, load_prepared
from recsys.errors import ArtifactError
from recsys.export import Artifact, load_artifact

if TYPE_CHECKING:
    from tests.recsys.export.conftest import Exported


@pytest.fixture(scope="module")
def loaded(exported: Exported) -> tuple[Artifact, PreparedDataset]:
    """The exported artifact as the server loads it, and the dataset it was exported from."""
    return load_artifact(exported.artifact), load_prepared(exported.data)


def test_loaded_artifact_describes_the_model(
    loaded: tuple[Artifact, PreparedDataset], tiny: dict[str, Any]
) -> None:
    artifact, dataset = loaded
    assert artifact.num_items == dataset.num_items and artifact.max_len == tiny["max_len"]
    assert artifact.model_version == artifact.manifest["model_version"]
    assert artifact.item_ids[0] == "" and len(artifact.item_ids) == dataset.num_items + 1
    assert not artifact.module.training


def test_loaded_artifact_maps_ids_both_ways(loaded: tuple[Artifact, PreparedDataset]) -> None:
    artifact, dataset = loaded
    table = dataset.items.table.sort("item_idx")
    expected_ids = table.get_column("item_id").to_list()
    assert artifact.item_ids[1:] == expected_ids
    known, unknown = artifact.to_indices([expected_ids[4], "no-such-item", expected_ids[0], ""])
    assert known == [5, 1] and unknown == ["no-such-item", ""]
    assert artifact.to_external([5, 1, 0]) == [expected_ids[4], expected_ids[0], ""]
    with pytest.raises(ArtifactError, match="outside the artifact's catalogue"):
        artifact.to_external([dataset.num_items + 1])


def test_loaded_artifact_ranks_by_training_popularity(
    loaded: tuple[Artifact, PreparedDataset],
) -> None:
    artifact, dataset = loaded
    table = dataset.items.table.sort("item_idx")
    counts = table.get_column("train_count").to_numpy().astype(np.float64)
    assert artifact.popularity[0] == 0 and np.array_equal(artifact.popularity[1:], counts)
    top = artifact.popular(5)
    assert [score for _, score in top] == sorted(counts, reverse=True)[:5]
    best = top[0][0]
    without_best = artifact.popular(5, exclude={best})
    assert best not in [index for index, _ in without_best]
    assert without_best[:4] == top[1:]
    everything = artifact.popular(10_000)
    assert len(everything) == dataset.num_items and 0 not in [i for i, _ in everything]


@pytest.mark.parametrize("name", ["model.ts", "items.parquet"])
def test_a_tampered_file_is_refused(artifact_copy: Path, name: str) -> None:
    with (artifact_copy / name).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError, match=rf"{name} fails its checksum"):
        load_artifact(artifact_copy)


def _unknown_format_version(artifact: Path) -> None:
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["format_version"] = "recsys.artifact/v9"
    (artifact / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda artifact: (artifact / "items.parquet").unlink(), r"items.parquet is missing"),
        (_unknown_format_version, "unknown artifact format version 'recsys.artifact/v9'"),
        (lambda artifact: (artifact / "manifest.json").unlink(), "manifest.json is missing"),
    ],
    ids=["no-items", "unknown-version", "no-manifest"],
)
def test_missing_files_and_unknown_versions_are_refused(
    artifact_copy: Path, damage: Callable[[Path], None], message: str
) -> None:
    damage(artifact_copy)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(artifact_copy)


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no such folder"):
        load_artifact(tmp_path / "nowhere")
