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
from typing import Protocol, runtime_checkable

import torch

from recsys.data import PreparedDataset
from recsys.errors import ConfigError, DataError
from recsys.models import SASRec


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


def checkpoint_scorer(
    path: Path,
    dataset: PreparedDataset | None = None,
    name: str = "sasrec",
    device: str | torch.device = "cpu",
) -> ModelScorer:
    """Load a training checkpoint (``recsys train``'s ``best.ckpt``/``last.ckpt``).

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
        _check_compatible(module.model, str(module.hparams.get("dataset_fingerprint", "")), dataset)
    return ModelScorer(module.model, name=name, device=torch.device(device))


def artifact_scorer(path: Path) -> Scorer:
    """An exported artifact folder as a scorer (needs ``recsys export``, not available yet)."""
    raise ConfigError(
        f"--artifact {path}: artifact evaluation needs `recsys export`, which is not available "
        "yet; evaluate the training checkpoint with --checkpoint instead"
    )


def _check_compatible(model: SASRec, fingerprint: str, dataset: PreparedDataset) -> None:
    if model.config.num_items != dataset.num_items:
        raise DataError(
            f"--checkpoint was trained on a catalogue of {model.config.num_items} items, but "
            f"--data has {dataset.num_items}: evaluate it on the dataset it was trained on"
        )
    expected = str(dataset.stats.get("input", {}).get("fingerprint", ""))
    if fingerprint and expected and fingerprint != expected:
        raise DataError(
            f"--checkpoint was trained on another input log (fingerprint {fingerprint}) than "
            f"--data was prepared from ({expected})"
        )
