"""Whether a training run fits in memory, worked out before anything is allocated.

A run that cannot fit should be refused with the setting to change, not die minutes later in
the allocator (or, on Linux, take the machine into swap and the OOM killer). The estimate is
an upper bound built from the shapes a step and a validation batch hold at their peak:

- weights, their gradients and AdamW's two moments (4 float32 copies of every parameter; the
  item embedding dominates: (V + 1) x H);
- the loss's logits: ``ce`` holds a [targets x V] matrix three times (logits, log-softmax, its
  gradient); ``sampled_softmax`` one [targets x K] buffer (``SharedCandidateSoftmax``); ``bce``
  the gathered negative embeddings;
- the blocks' activations kept for the backward pass, attention maps included;
- full-ranking validation: a [users x (V + 1)] score matrix and its comparison mask.

Targets per batch are bounded by ``batch_size x max_len`` (every position of every window), and
no batch holds more users than the data has.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil
import torch

from recsys.errors import ConfigError
from recsys.models import SASRecConfig
from recsys.training.config import TrainConfig

_FLOAT: int = 4
_HEADROOM: float = 0.9
"""Share of the available memory a run may plan to use (the rest: the data, Python, the
allocator's slack)."""
VALIDATION_CELLS: int = 1 << 24
"""Scores per validation batch when ``eval_batch_size`` is auto (64 MB of float32)."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes of a training run, by part."""

    parameters: int
    """Weights, gradients and optimiser state."""
    loss: int
    """The loss's logits (and their copies) for one batch."""
    activations: int
    """What the blocks keep for the backward pass, for one batch."""
    validation: int
    """One full-ranking validation batch's scores."""

    @property
    def peak(self) -> int:
        return self.parameters + max(self.loss + self.activations, self.validation)

    def as_dict(self) -> dict[str, float]:
        gib = 1 << 30
        parts = {
            "parameters_gib": self.parameters / gib,
            "loss_gib": self.loss / gib,
            "activations_gib": self.activations / gib,
            "validation_gib": self.validation / gib,
            "peak_gib": self.peak / gib,
        }
        return {key: round(value, 3) for key, value in parts.items()}


def auto_eval_batch_size(num_items: int, requested: int) -> int:
    """Validation users per batch: ``requested`` at most, and no more than ~16M scores (at
    least 16 users), so validation's memory does not grow with the catalogue."""
    return max(1, min(requested, max(16, VALIDATION_CELLS // (num_items + 1))))


def estimate_training_memory(
    config: TrainConfig, backbone: SASRecConfig, eval_batch_size: int, num_users: int
) -> MemoryEstimate:
    """The peak bytes of training ``backbone`` with the resolved ``config`` on ``num_users``
    users (no batch holds more)."""
    hidden, length = backbone.hidden_size, backbone.max_len
    batch = min(config.batch_size, num_users)
    eval_batch_size = min(eval_batch_size, num_users)
    ffn = backbone.ffn_multiplier * hidden
    block_parameters = 4 * hidden * hidden + 2 * hidden * ffn + 9 * hidden + ffn
    parameters = (backbone.num_items + 1 + length) * hidden + backbone.n_blocks * block_parameters
    targets = batch * length
    if config.loss == "ce":
        copies = 4 if config.exclude_seen_negatives else 3
        loss = targets * backbone.num_items * _FLOAT * copies
    elif config.loss == "sampled_softmax":
        negatives = int(config.num_negatives)  # resolved by now
        loss = targets * negatives * _FLOAT + negatives * hidden * _FLOAT * 2
    else:
        loss = targets * config.bce_negatives * hidden * _FLOAT * 2
    per_block = batch * length * (10 * hidden + 2 * ffn) + 3 * batch * backbone.n_heads * length**2
    activations = (backbone.n_blocks * per_block + 4 * batch * length * hidden) * _FLOAT
    validation = 0
    if config.val_protocol == "full":
        validation = eval_batch_size * (backbone.num_items + 1) * (_FLOAT + 1)
    return MemoryEstimate(4 * parameters * _FLOAT, loss, activations, validation)


def available_memory(on_gpu: bool) -> int:
    """Bytes a run may use: the GPU's memory, or the host's available memory on a CPU."""
    if on_gpu:
        return int(torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory)
    return int(psutil.virtual_memory().available)


def check_fits(estimate: MemoryEstimate, available: int, where: str) -> None:
    """Raise ``ConfigError`` naming the setting to change when ``estimate`` cannot fit."""
    budget = int(available * _HEADROOM)
    if estimate.peak <= budget:
        return
    gib = 1 << 30
    parts = {
        "parameters": (
            estimate.parameters,
            "a smaller --hidden-size (the item embedding and "
            "AdamW's state grow with catalogue x hidden size)",
        ),
        "loss": (
            estimate.loss,
            "--loss sampled_softmax (or auto), which costs per target "
            "and negative, not per item; or a smaller --batch-size",
        ),
        "activations": (estimate.activations, "a smaller --batch-size or --max-len"),
        "validation": (estimate.validation, "a smaller --eval-batch-size (or auto)"),
    }
    name, (size, remedy) = max(parts.items(), key=lambda part: part[1][0])
    raise ConfigError(
        f"this run needs about {estimate.peak / gib:.1f} GiB at its peak and {where} has "
        f"{available / gib:.1f} GiB available ({_HEADROOM:.0%} of it usable); the largest part "
        f"is the {name} ({size / gib:.1f} GiB): use {remedy}"
    )
