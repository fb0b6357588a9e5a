"""Models: ``sasrec`` (the backbone, a plain ``nn.Module`` that export scripts), ``layers``
(attention, feed-forward, blocks), ``dropout`` (a fast CPU dropout), ``config`` (the
architecture and backbone configs) and ``losses`` (the training losses). No Lightning here."""

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
