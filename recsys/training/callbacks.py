"""Callbacks of the training job: epoch timing (validation excluded), the progress bar, the
validation period measured from the first epoch, and the learning-rate plan kept within the time
budget."""

from __future__ import annotations

import math
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar

from recsys.training.schedule import BudgetedCosine, planned_epochs

PROGRESS_REFRESH_STEPS = 10


def progress_bar() -> TQDMProgressBar:
    """The training progress bar, redrawn every ``PROGRESS_REFRESH_STEPS`` steps.

    Why not Lightning's default (Rich, when rich is installed): it re-reads the logged metrics and
    redraws on every step, with a render thread beside it, a visible share of a short CPU step.
    This bar costs nothing measurable.
    """
    return TQDMProgressBar(refresh_rate=PROGRESS_REFRESH_STEPS)


class EpochTimer(pl.Callback):
    """Wall time of each training epoch, from its first batch to its validation (or end)."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._started: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def _stop(self) -> None:
        if self._started is not None:
            self.durations.append(time.perf_counter() - self._started)
            self._started = None

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._stop()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop()


class AdaptiveValidation(pl.Callback):
    """Validate as often as keeps validation within ``share`` of the training time.

    Full-ranking validation scores every validation user against the whole catalogue; next to a
    short epoch (a small log, a GPU) that can cost more than the epoch itself, and next to a long
    one it is cheap. So the first epoch is validated and both are timed; from then on the period
    is ``ceil(validation seconds / (share * epoch seconds))`` epochs, the smallest that keeps the
    share. ``period`` holds the decision (None until made), for the run's summary.
    """

    def __init__(self, share: float = 0.2) -> None:
        self.share = share
        self.period: int | None = None
        self._epoch_started: float | None = None
        self._epoch_seconds: float | None = None
        self._validation_started: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_started = time.perf_counter()

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._epoch_started is not None and self._epoch_seconds is None:
            self._epoch_seconds = time.perf_counter() - self._epoch_started
        self._validation_started = time.perf_counter()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.period is not None or self._validation_started is None:
            return
        validation_seconds = time.perf_counter() - self._validation_started
        epoch_seconds = max(self._epoch_seconds or 0.0, 1e-6)
        self.period = max(1, math.ceil(validation_seconds / (self.share * epoch_seconds)))
        trainer.check_val_every_n_epoch = self.period


class BudgetPlanner(pl.Callback):
    """After every epoch, end the learning-rate decay where the run will end: at ``max_epochs``
    or when the time budget runs out at the pace so far (``recsys.training.schedule``).

    Reads the module's ``lr_schedule`` (a ``BudgetedCosine``); does nothing without one.
    """

    def __init__(self, budget_s: float | None) -> None:
        self.budget_s = budget_s
        self._started = 0.0
        self._first_epoch = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()
        self._first_epoch = trainer.current_epoch  # a resumed run plans from where it resumed

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        schedule = getattr(pl_module, "lr_schedule", None)
        if not isinstance(schedule, BudgetedCosine) or trainer.max_epochs is None:
            return
        done = trainer.current_epoch + 1 - self._first_epoch
        epochs = planned_epochs(
            trainer.max_epochs - self._first_epoch,
            done,
            time.perf_counter() - self._started,
            self.budget_s,
        )
        steps_per_epoch = int(trainer.num_training_batches)
        schedule.replan((self._first_epoch + epochs) * steps_per_epoch)
