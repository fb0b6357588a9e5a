"""Training: the sequence data module, the Lightning module, the config and the training job."""

from recsys.training.config import TrainConfig
from recsys.training.datamodule import SequenceDataModule, evaluation_loader
from recsys.training.module import VALIDATION_METRIC, SASRecModule
from recsys.training.run import resolve_precision, train
from recsys.training.sequences import (
    FlatSequences,
    HeldOutTargets,
    LengthBucketBatchSampler,
    evaluation_batch,
    held_out_targets,
    training_batch,
    training_sequences,
)

__all__ = [
    "VALIDATION_METRIC",
    "FlatSequences",
    "HeldOutTargets",
    "LengthBucketBatchSampler",
    "SASRecModule",
    "SequenceDataModule",
    "TrainConfig",
    "evaluation_batch",
    "evaluation_loader",
    "held_out_targets",
    "resolve_precision",
    "train",
    "training_batch",
    "training_sequences",
]
