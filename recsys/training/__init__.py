"""Training: ``config`` (``TrainConfig``), ``datamodule`` (length-bucketed training windows,
validation targets), ``module`` (the Lightning module: losses, optimiser, validation), ``run``
(the training job: checkpoints, logs, summary, curves), ``checkpoint`` (reading a checkpoint
back, and as a scorer), ``callbacks`` and ``curves`` (epoch timing, progress, training curves),
``recipe`` (the recommended recipe's rules) and ``memory`` (whether a run fits, before it
allocates)."""

from recsys.training.checkpoint import checkpoint_scorer, load_checkpoint
from recsys.training.config import TrainConfig
from recsys.training.datamodule import SequenceDataModule, evaluation_loader
from recsys.training.module import VALIDATION_METRIC, SASRecModule
from recsys.training.recipe import Choice, resolve_recipe
from recsys.training.run import resolve_precision, train

__all__ = [
    "VALIDATION_METRIC",
    "SASRecModule",
    "SequenceDataModule",
    "Choice",
    "TrainConfig",
    "checkpoint_scorer",
    "evaluation_loader",
    "load_checkpoint",
    "resolve_precision",
    "resolve_recipe",
    "train",
]
