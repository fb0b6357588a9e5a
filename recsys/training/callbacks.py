"""Callbacks of the training job: epoch timing (validation excluded) and the progress bar."""

from __future__ import annotations

import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar

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
