"""Reading a training checkpoint back: the reader lives beside its writer (``recsys train``).

Evaluation (``recsys evaluate --checkpoint``) and export load checkpoints through here, so a
change to what a checkpoint holds is made in one layer.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from recsys.data import PreparedDataset
from recsys.errors import ConfigError, DataError
from recsys.evaluation import ModelScorer
from recsys.training.module import SASRecModule


def load_checkpoint(path: Path, dataset: PreparedDataset | None = None) -> SASRecModule:
    """Load a training checkpoint (``recsys train``'s ``best.ckpt``/``last.ckpt``) on the CPU.

    With ``dataset``, refuse a checkpoint trained on another catalogue or another input log.
    Errors name the ``--checkpoint`` flag.
    """
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
        dataset.check_model_matches(
            module.model.config.num_items,
            str(module.hparams.get("dataset_fingerprint", "")),
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
