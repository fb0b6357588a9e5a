"""What the evaluation ranks with: the ``Scorer`` protocol, and scorers for trained models.

A scorer maps right-aligned history windows to a score for every item; the evaluation code knows
nothing else about it, so a model checkpoint, an exported artifact or a baseline go through the
same code path. Anything with ``name``, ``max_len`` and this ``__call__`` is a scorer.

Shape letters: B batch, L window length (<= ``max_len``), V catalogue size.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

from recsys.data import PreparedDataset
from recsys.errors import ConfigError, DataError
from recsys.models import SASRec

if TYPE_CHECKING:
    from recsys.export import Artifact
    from recsys.training import SASRecModule


@runtime_checkable
class Scorer(Protocol):
    """``(history_windows: LongTensor[B, L]) -> FloatTensor[B, V + 1]``.

    Windows hold item indices, newest last, left-padded with 0, at most ``max_len`` wide. Column
    0 of the scores (padding) is ``-inf``. Scores may live on any device; higher is better.
    """

    @property
    def name(self) -> str:
        """Label in reports and ``metrics.json``."""
        ...

    @property
    def max_len(self) -> int:
        """Longest window the scorer reads (1 for scorers that only look at the last item)."""
        ...

    def __call__(self, history_windows: torch.Tensor) -> torch.Tensor: ...


@dataclass(eq=False)
class ModelScorer:
    """A ``SASRec`` backbone in eval mode, scoring on ``device``."""

    model: SASRec
    name: str = "sasrec"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        self.model = self.model.to(self.device).eval()

    @property
    def max_len(self) -> int:
        return int(self.model.config.max_len)

    def __call__(self, history_windows: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.score_next(history_windows.to(self.device))  # [B, V + 1]


def load_checkpoint(path: Path, dataset: PreparedDataset | None = None) -> SASRecModule:
    """Load a training checkpoint (``recsys train``'s ``best.ckpt``/``last.ckpt``) on the CPU.

    With ``dataset``, refuse a checkpoint trained on another catalogue or another input log.
    Errors name the ``--checkpoint`` flag.
    """
    from recsys.training import SASRecModule  # here: recsys.training imports this package

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--checkpoint {path}: no such file")
    try:
        module = SASRecModule.load_from_checkpoint(path, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, KeyError, TypeError, ValueError, EOFError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            f"--checkpoint {path} is not a SASRec training checkpoint: {first_line}"
        ) from err
    if dataset is not None:
        check_compatible(
            module.model.config.num_items,
            str(module.hparams.get("dataset_fingerprint", "")),
            dataset,
            "--checkpoint",
        )
    return module.eval()


def checkpoint_scorer(
    path: Path,
    dataset: PreparedDataset | None = None,
    name: str = "sasrec",
    device: str | torch.device = "cpu",
) -> ModelScorer:
    """A training checkpoint as a scorer (see ``load_checkpoint`` for what is refused)."""
    module = load_checkpoint(path, dataset)
    return ModelScorer(module.model, name=name, device=torch.device(device))


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
    from recsys.export import load_artifact  # here: recsys.export's exporter imports this module

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"--artifact {path}: no such folder")
    artifact = load_artifact(path)
    if dataset is not None:
        fingerprint = artifact.manifest.get("dataset", {}).get("fingerprint", "")
        check_compatible(artifact.num_items, str(fingerprint or ""), dataset, "--artifact")
    return ArtifactScorer(artifact, name=name)


def check_compatible(num_items: int, fingerprint: str, dataset: PreparedDataset, flag: str) -> None:
    """Refuse a model of another catalogue size or input log than ``dataset``; errors name
    ``flag`` (``--checkpoint``/``--artifact``)."""
    if num_items != dataset.num_items:
        raise DataError(
            f"{flag} was trained on a catalogue of {num_items} items, but --data has "
            f"{dataset.num_items}: use it with the dataset it was trained on"
        )
    expected = str(dataset.stats.get("input", {}).get("fingerprint", ""))
    if fingerprint and expected and fingerprint != expected:
        raise DataError(
            f"{flag} was trained on another input log (fingerprint {fingerprint}) than "
            f"--data was prepared from ({expected})"
        )
