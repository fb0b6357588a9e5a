"""The training configuration: every key of an experiment YAML, typed, validated and documented.

A YAML file in ``pipelines/configs/`` sets any subset of these keys; the ``recsys train`` flags
override any key (``--hidden-size 64`` sets ``hidden_size``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from recsys.config import Config
from recsys.models import ArchitectureConfig, LossName, SASRecConfig


class TrainConfig(Config):
    """One training experiment: the model's architecture (a section of its own) and how it is
    trained. Keys may be given flat, as the flags are (``hidden_size: 64``): the architecture's
    keys are moved into ``model``."""

    model: ArchitectureConfig = Field(default_factory=ArchitectureConfig)
    """The network's shape (``recsys.models.ArchitectureConfig``: max_len, hidden_size, ...)."""

    # loss
    loss: LossName | Literal["auto"] = Field(
        "auto",
        description="bce (1 sampled negative per position, the paper), sampled_softmax "
        "(num_negatives shared negatives), ce (full softmax over the catalogue); auto: ce "
        "where the catalogue is no larger than the negatives a step can afford, else "
        "sampled_softmax (recsys.training.recipe).",
    )
    num_negatives: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="sampled_softmax: negatives per batch, shared by its targets; auto: by "
        "the device (recsys.training.recipe).",
    )
    bce_negatives: int = Field(
        1, ge=1, description="bce: uniform negatives per target, their terms averaged (paper: 1)."
    )
    negative_sampling: Literal["uniform", "popularity"] = Field(
        "uniform",
        description="sampled_softmax: uniform, or by training popularity with log-Q correction.",
    )

    logq_correction: bool = Field(
        False,
        description="sampled_softmax: lower each negative's logit by log(K * q), its expected "
        "count in the sample, so the loss estimates the full softmax (Bengio & Senecal 2008); "
        "off: uniform negatives uncorrected, popularity ones corrected by log q alone.",
    )
    exclude_seen_negatives: bool = Field(
        False,
        description="ce, sampled_softmax: a user's own items (in its training window) are not "
        "negatives for its targets, as inference never recommends them (exclude_seen).",
    )

    target_fraction: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="Share of the target positions scored in each step (a fresh random draw "
        "each time): below 1 a step affords more negatives per target at the same cost.",
    )

    loss_weighting: Literal["target", "batch"] = Field(
        "target",
        description="target: every target position weighs the same wherever it lands (a "
        "batch's mean loss is scaled by its number of targets over the mean number per batch), "
        "as with the paper's randomly drawn batches; batch: the plain mean over each batch, "
        "which over-weights short histories in length-bucketed batches (converges several times "
        "slower).",
    )

    # optimisation
    max_epochs: int = Field(200, ge=1, description="Upper bound on training epochs.")
    max_minutes: Annotated[float, Field(gt=0)] | None | Literal["auto"] = Field(
        "auto",
        description="Stop after this much wall time (minutes; the learning rate decays to 0 "
        "by then); none: no limit; auto: 15.",
    )
    batch_size: int = Field(128, ge=1, description="Users per training batch.")
    learning_rate: float = Field(2e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay (not on norms/biases).")
    scheduler: Literal["none", "cosine"] = Field(
        "cosine",
        description="none: constant rate; cosine: linear warm-up, then cosine decay to 0 over "
        "max_epochs or max_minutes, whichever runs out first (recsys.training.schedule).",
    )
    warmup_steps: int = Field(0, ge=0, description="cosine: warm-up steps.")
    embedding_updates: Literal["auto", "dense", "sparse"] = Field(
        "auto",
        description="dense: AdamW updates the whole item embedding every step; sparse: only "
        "the rows a step read (its items, targets and negatives) get a gradient and an Adam "
        "update (recsys.training.optim), a cost that does not grow with the catalogue "
        "(sampled_softmax and bce only); auto: sparse on a CPU above 200,000 items with a "
        "sampled loss, else dense (recsys.training.recipe).",
    )
    gradient_clip: float | None = Field(
        1.0, gt=0, description="Clip the gradient norm to this; None: no clipping."
    )

    # validation, early stopping
    eval_batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="Users per validation batch; auto: up to 1024, fewer for large catalogues "
        "(about 16M scores a batch, recsys.training.memory).",
    )
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
    val_users: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="Validate on a seeded uniform sample of this many users (the same every "
        "epoch); auto: every user while users x items stays under about 4 billion scores, "
        "else as many as fit that (at least 10,000) (recsys.training.recipe).",
    )
    check_val_every_n_epoch: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="Validate every n epochs; auto: after the first epoch, as often as keeps "
        "validation within a fifth of the training time.",
    )
    patience: int = Field(
        20, ge=1, description="Early stopping: validations without NDCG@10 improvement."
    )

    # hardware, reproducibility
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = Field(
        "auto", description="auto uses a GPU when present."
    )
    devices: int | Literal["auto"] = Field("auto", description="Number of devices, or auto.")
    strategy: str = Field("auto", description="Lightning strategy: auto, ddp, ...")
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = Field(
        "auto",
        description="auto: bf16-mixed where the hardware computes in bf16 (a GPU that supports "
        "it, a CPU with avx512_bf16/amx_bf16), else 32-true.",
    )
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    seed: int = Field(0, ge=0, description="Seed for weights, sampling and batch order.")

    @model_validator(mode="before")
    @classmethod
    def _lift_model_keys(cls, values: Any) -> Any:
        """Flat architecture keys (``hidden_size: 64``, as the flags are) go into ``model``."""
        if not isinstance(values, dict):
            return values
        flat = {key: values[key] for key in ArchitectureConfig.model_fields if key in values}
        if not flat:
            return values
        section = values.get("model") or {}
        if isinstance(section, ArchitectureConfig):
            section = section.model_dump()
        if not isinstance(section, dict):
            return values  # not a mapping: the field's own validation names the problem
        rest = {key: value for key, value in values.items() if key not in flat}
        return {**rest, "model": {**section, **flat}}

    def validation_label(self) -> str:
        """How validation ranks, for reports and plots."""
        if self.val_protocol == "sampled":
            return f"sampled protocol, {self.val_negatives} negatives"
        return "full ranking, seen items excluded"

    def model_config_for(self, num_items: int) -> SASRecConfig:
        """The backbone config for a catalogue of ``num_items`` items."""
        return SASRecConfig.of(self.model, num_items)
