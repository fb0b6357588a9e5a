"""Models: the SASRec backbone (plain ``nn.Module``, exportable), its layers, config and losses."""

from recsys.models.config import ArchitectureConfig, SASRecConfig
from recsys.models.losses import (
    LOSSES,
    LossName,
    bce_loss,
    full_softmax_loss,
    sample_negatives,
    sampled_softmax_loss,
)
from recsys.models.sasrec import SASRec

__all__ = [
    "ArchitectureConfig",
    "LOSSES",
    "LossName",
    "SASRec",
    "SASRecConfig",
    "bce_loss",
    "full_softmax_loss",
    "sample_negatives",
    "sampled_softmax_loss",
]
