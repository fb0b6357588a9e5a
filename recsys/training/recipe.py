"""The recommended recipe: every ``auto`` setting of a ``TrainConfig`` derived from the data and
the device, each with the rule that chose it.

``recsys train`` with no config trains this recipe. What it derives (everything else has a fixed
default in ``TrainConfig``):

- ``max_len``: long enough for the histories most users have (95th percentile of events per
  user), at least 50 (the SASRec paper's length for sparse logs) and at most 200 (its length for
  dense ones; attention costs grow with its square).
- ``dropout``: 0.5 where items are rare (under 30 interactions per item on average: the SASRec
  paper's rate on its sparse Amazon logs, where an item's embedding learns from a dozen events),
  0.2 where they are not (its rate on MovieLens-1M): an embedding seen rarely overfits, one seen
  often needs the capacity. ``bench/results/recipe_levers.md`` compares the rates on both kinds.
- ``num_negatives``: how many catalogue items each batch's softmax ranks its targets against.
  More is better until it approaches the full cross-entropy (the strongest loss in Klenitskiy &
  Vasilev, RecSys 2023), and the step's cost grows with it: 4,096 on a CPU, the most that keeps
  an epoch within twice the paper's BCE epoch (``bench/train_speed.py``), past which the Amazon
  logs gained nothing more (``bench/results/recipe_levers.md``); 16,384 on a GPU, where it costs
  little.
- ``loss``: the full softmax (``ce``) where the catalogue is no larger than that (exact, and no
  dearer), sampled softmax with uniform negatives above it (cost per target, not per item: it
  scales to any catalogue).
- ``embedding_updates``: sparse (only the rows a step read get a gradient and an Adam
  update, ``recsys.training.optim``) on a CPU above ``SPARSE_UPDATE_ITEMS`` items with a sampled
  loss, where the dense AdamW update of the whole item table every step would cost more than the
  step's own work (``bench/results/train_scaling.md``); dense elsewhere: exactly AdamW, and on a
  GPU the table's update costs little.
- ``max_minutes``: 15 (the learning rate decays to zero by then; ``recsys.training.schedule``).
- ``precision``: bf16 mixed precision where the hardware computes in bf16 (a GPU that supports
  it; a CPU with AVX512-BF16 or AMX instructions, where its matrix products run several times
  faster than in float32 at the same quality, ``bench/results/recipe_levers.md``), float32
  elsewhere. Weights, optimiser state and the exported model stay float32.
- ``val_users``: every validation user while users x items stays under ``VALIDATION_SCORES``
  (validation ranks the whole catalogue for each user, every time it runs), else a seeded sample
  that fits it, at least ``MIN_VAL_USERS`` (a bootstrap interval of NDCG@10 over 10,000 users is
  narrow enough to tell epochs apart).
- ``check_val_every_n_epoch``: decided after the first epoch by ``AdaptiveValidation``.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import torch

from recsys.data import PreparedDataset
from recsys.data import columns as C
from recsys.training.config import TrainConfig

MIN_MAX_LEN: Final = 50
MAX_MAX_LEN: Final = 200
DENSE_EVENTS_PER_ITEM: Final = 30.0
SPARSE_DROPOUT: Final = 0.5
DENSE_DROPOUT: Final = 0.2
CPU_NEGATIVES: Final = 4096
GPU_NEGATIVES: Final = 16384
SPARSE_UPDATE_ITEMS: Final = 200_000
DEFAULT_MINUTES: Final = 15.0
VALIDATION_SCORES: Final = 1 << 32
MIN_VAL_USERS: Final = 10_000


@dataclass(frozen=True)
class Choice:
    """One derived setting: its key, the value chosen and the rule, in words, with the data."""

    key: str
    value: Any
    rule: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def native_bf16_cpu() -> bool:
    """Whether this CPU computes in bf16 in hardware (Linux: its flags list ``avx512_bf16`` or
    ``amx_bf16``); elsewhere, or where that cannot be read, False (emulated bf16 is slower)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def auto_precision(on_gpu: bool) -> tuple[str, str]:
    """(precision, the rule) for ``precision: auto``."""
    if on_gpu:
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", "a GPU with bf16"
        return "32-true", "a GPU without bf16"
    if native_bf16_cpu():
        return "bf16-mixed", "a CPU with bf16 instructions (avx512_bf16 or amx_bf16)"
    return "32-true", "a CPU without bf16 instructions"


def len_validation_users(dataset: PreparedDataset) -> int:
    """Users with a validation event (an upper bound on those validation ranks)."""
    frame = dataset.interactions
    users = frame.get_column(C.USER_IDX).filter(frame.get_column(C.SPLIT) == C.VALIDATION)
    return int(users.n_unique())


def resolve_recipe(
    config: TrainConfig, dataset: PreparedDataset, on_gpu: bool
) -> tuple[TrainConfig, list[Choice]]:
    """``config`` with every ``auto`` replaced by its derived value, and the choices made.

    ``check_val_every_n_epoch: auto`` stays: it is measured during training.
    """
    lengths = dataset.stats.get("sequence_length", {})
    choices: list[Choice] = []
    model: dict[str, Any] = {}
    if config.model.max_len == "auto":
        p95 = float(lengths.get("p95", MIN_MAX_LEN))
        value = int(min(MAX_MAX_LEN, max(MIN_MAX_LEN, math.ceil(p95 / 10) * 10)))
        model["max_len"] = value
        choices.append(
            Choice(
                "max_len",
                value,
                f"95% of users have at most {p95:g} events; rounded up to tens, within "
                f"[{MIN_MAX_LEN}, {MAX_MAX_LEN}]",
            )
        )
    if config.model.dropout == "auto":
        per_item = float(dataset.stats["num_interactions"]) / max(1, dataset.num_items)
        dense = per_item >= DENSE_EVENTS_PER_ITEM
        value_f = DENSE_DROPOUT if dense else SPARSE_DROPOUT
        model["dropout"] = value_f
        choices.append(
            Choice(
                "dropout",
                value_f,
                f"{per_item:.1f} interactions per item on average: "
                + ("items are not rare" if dense else "items are rare")
                + f" (rare below {DENSE_EVENTS_PER_ITEM:g})",
            )
        )
    updates: dict[str, Any] = {}
    negatives = config.num_negatives
    if negatives == "auto":
        negatives = GPU_NEGATIVES if on_gpu else CPU_NEGATIVES
        updates["num_negatives"] = negatives
        choices.append(
            Choice(
                "num_negatives",
                negatives,
                "what a step affords on " + ("a GPU" if on_gpu else "a CPU"),
            )
        )
    if config.loss == "auto":
        exact = dataset.num_items <= negatives
        loss = "ce" if exact else "sampled_softmax"
        updates["loss"] = loss
        choices.append(
            Choice(
                "loss",
                loss,
                f"{dataset.num_items:,} items "
                + ("<=" if exact else ">")
                + f" {negatives:,} negatives: "
                + ("the full softmax costs no more" if exact else "sample the softmax"),
            )
        )
    if config.embedding_updates == "auto":
        loss_name = updates.get("loss", config.loss)
        large = dataset.num_items > SPARSE_UPDATE_ITEMS
        sparse = large and not on_gpu and loss_name != "ce"
        updates["embedding_updates"] = "sparse" if sparse else "dense"
        if on_gpu:
            why = "on a GPU the whole table's update costs little"
        elif not large:
            why = (
                f"{dataset.num_items:,} items <= {SPARSE_UPDATE_ITEMS:,}: the whole table is cheap"
            )
        elif loss_name == "ce":
            why = "the full softmax's gradient is dense"
        else:
            why = (
                f"{dataset.num_items:,} items > {SPARSE_UPDATE_ITEMS:,} on a CPU: update only "
                "the rows a step read"
            )
        choices.append(Choice("embedding_updates", updates["embedding_updates"], why))
    if config.max_minutes == "auto":
        updates["max_minutes"] = DEFAULT_MINUTES
        choices.append(Choice("max_minutes", DEFAULT_MINUTES, "the default time budget"))
    if config.val_users == "auto":
        users = len_validation_users(dataset)
        fits = max(MIN_VAL_USERS, VALIDATION_SCORES // (dataset.num_items + 1))
        updates["val_users"] = min(users, fits)
        choices.append(
            Choice(
                "val_users",
                updates["val_users"],
                f"{users:,} validation users x {dataset.num_items:,} items "
                + (
                    f"<= {VALIDATION_SCORES:,} scores: all of them"
                    if users <= fits
                    else f"> {VALIDATION_SCORES:,} scores: a seeded sample that fits "
                    f"(at least {MIN_VAL_USERS:,})"
                ),
            )
        )
    if config.precision == "auto":
        precision, rule = auto_precision(on_gpu)
        updates["precision"] = precision
        choices.append(Choice("precision", precision, rule))
    values = config.model_dump(mode="json")
    values["model"] = {**values["model"], **model}
    return TrainConfig.build({**values, **updates}, origin="the resolved recipe"), choices
