"""The training configuration: every key of an experiment YAML, typed, validated and documented.

A YAML file in ``pipelines/configs/`` sets any subset of these keys; the ``recsys train`` flags
override any key (``--hidden-size 64`` sets ``hidden_size``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from recsys.errors import ConfigError
from recsys.models import LossName, SASRecConfig


class TrainConfig(BaseModel):
    """One training experiment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # model
    max_len: int = Field(50, ge=1, description="Longest history the model reads (items).")
    hidden_size: int = Field(50, ge=1, description="Embedding and hidden size.")
    n_blocks: int = Field(2, ge=1, description="Number of self-attention blocks.")
    n_heads: int = Field(1, ge=1, description="Attention heads per block; must divide hidden_size.")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="Dropout rate everywhere.")
    norm_first: bool = Field(True, description="Pre-LayerNorm blocks (False: post-LayerNorm).")
    ffn_multiplier: int = Field(1, ge=1, description="Feed-forward width / hidden_size.")

    # loss
    loss: LossName = Field(
        "ce",
        description="bce (1 sampled negative per position, the paper), sampled_softmax "
        "(num_negatives shared negatives), ce (full softmax over the catalogue).",
    )
    num_negatives: int = Field(256, ge=1, description="sampled_softmax: negatives per batch.")
    bce_negatives: int = Field(
        1, ge=1, description="bce: uniform negatives per target, their terms averaged (paper: 1)."
    )
    negative_sampling: Literal["uniform", "popularity"] = Field(
        "uniform",
        description="sampled_softmax: uniform, or by training popularity with log-Q correction.",
    )

    loss_weighting: Literal["target", "batch"] = Field(
        "target",
        description="target: every target position weighs the same wherever it lands (a "
        "batch's mean loss is scaled by its number of targets over the mean number per batch), "
        "as with the paper's randomly drawn batches; batch: the plain mean over each batch, "
        "which over-weights short histories in length-bucketed batches (converges ~3x slower on "
        "Video Games).",
    )

    # optimisation
    max_epochs: int = Field(200, ge=1, description="Upper bound on training epochs.")
    max_minutes: float | None = Field(
        None, gt=0, description="Stop after this much wall time (minutes); None: no limit."
    )
    batch_size: int = Field(128, ge=1, description="Users per training batch.")
    learning_rate: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay (not on norms/biases).")
    scheduler: Literal["none", "cosine"] = Field(
        "none", description="none: constant rate; cosine: linear warm-up then cosine decay."
    )
    warmup_steps: int = Field(0, ge=0, description="cosine: warm-up steps.")
    gradient_clip: float | None = Field(
        1.0, gt=0, description="Clip the gradient norm to this; None: no clipping."
    )

    # validation, early stopping
    eval_batch_size: int = Field(1024, ge=1, description="Users per validation batch.")
    val_protocol: Literal["full", "sampled"] = Field(
        "full",
        description="Validation metrics, and so checkpoint selection and early stopping: full "
        "(rank every item, seen items excluded) or sampled (the SASRec paper's protocol: the "
        "target against val_negatives uniform items the user never interacted with, drawn once "
        "per run). Select on the protocol you will report.",
    )
    val_negatives: int = Field(
        100, ge=1, description="sampled validation: negatives per user (the paper: 100)."
    )
    check_val_every_n_epoch: int = Field(1, ge=1, description="Validate every n epochs.")
    patience: int = Field(
        5, ge=1, description="Early stopping: validations without NDCG@10 improvement."
    )

    # hardware, reproducibility
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = Field(
        "auto", description="auto uses a GPU when present."
    )
    devices: int | Literal["auto"] = Field("auto", description="Number of devices, or auto.")
    strategy: str = Field("auto", description="Lightning strategy: auto, ddp, ...")
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = Field(
        "auto", description="auto: bf16-mixed on a GPU that supports it, else 32-true."
    )
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    seed: int = Field(0, ge=0, description="Seed for weights, sampling and batch order.")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> TrainConfig:
        if self.hidden_size % self.n_heads:
            raise ValueError(
                f"n_heads ({self.n_heads}) must divide hidden_size ({self.hidden_size})"
            )
        return self

    def validation_label(self) -> str:
        """How validation ranks, for reports and plots."""
        if self.val_protocol == "sampled":
            return f"sampled protocol, {self.val_negatives} negatives"
        return "full ranking, seen items excluded"

    def model_config_for(self, num_items: int) -> SASRecConfig:
        """The backbone config for a catalogue of ``num_items`` items."""
        return SASRecConfig(
            num_items=num_items,
            max_len=self.max_len,
            hidden_size=self.hidden_size,
            n_blocks=self.n_blocks,
            n_heads=self.n_heads,
            dropout=self.dropout,
            norm_first=self.norm_first,
            ffn_multiplier=self.ffn_multiplier,
        )

    @classmethod
    def build(cls, values: dict[str, Any], origin: str = "the configuration") -> TrainConfig:
        """Validate ``values``; every problem is reported with the key (as a flag) it concerns."""
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            problems = []
            for error in err.errors():
                key = ".".join(str(part) for part in error["loc"])
                flag = f"{key} (--{key.replace('_', '-')})" if key else "config"
                if error["type"] == "extra_forbidden":
                    problems.append(f"unknown key {flag}")
                else:
                    problems.append(f"{flag}: {error['msg']}")
            raise ConfigError(f"invalid {origin}: " + "; ".join(problems)) from err

    @classmethod
    def from_yaml(cls, path: Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
        """Read a YAML file (a mapping of keys above), then apply ``overrides``."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from err
        if not isinstance(values, dict):
            raise ConfigError(f"{path} must hold a mapping of config keys")
        return cls.build({**values, **(overrides or {})}, origin=str(path))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
