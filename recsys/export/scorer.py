"""An exported artifact as an evaluation ``Scorer``: offline metrics of exactly what is served."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from recsys.data import PreparedDataset
from recsys.errors import ConfigError
from recsys.export.artifact import Artifact, load_artifact


@dataclass(eq=False)
class ArtifactScorer:
    """An exported artifact's TorchScript module, through its ``scores`` method (CPU)."""

    artifact: Artifact
    name: str = "sasrec"

    @property
    def max_len(self) -> int:
        return self.artifact.max_len

    def __call__(self, history_windows: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.artifact.module.scores(history_windows)  # [B, V + 1]


def artifact_scorer(
    path: Path, dataset: PreparedDataset | None = None, name: str = "sasrec"
) -> ArtifactScorer:
    """An artifact folder (``recsys export``) as a scorer, loaded with its checksums verified.

    With ``dataset``, refuse an artifact exported from a model of another catalogue or input log.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"--artifact {path}: no such folder")
    artifact = load_artifact(path)
    if dataset is not None:
        artifact_fingerprint = artifact.manifest.get("dataset", {}).get("fingerprint", "")
        dataset.check_model_matches(
            artifact.num_items, str(artifact_fingerprint or ""), "--artifact"
        )
    return ArtifactScorer(artifact, name=name)
