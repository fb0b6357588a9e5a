"""The training callbacks that decide during the run: the validation period and the end of the
learning-rate decay."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from recsys.training.callbacks import AdaptiveValidation, BudgetPlanner
from recsys.training.schedule import BudgetedCosine


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr("recsys.training.callbacks.time.perf_counter", fake)
    return fake


@pytest.mark.parametrize(
    ("epoch_s", "validation_s", "period"), [(10.0, 1.0, 1), (10.0, 2.0, 1), (2.0, 3.0, 8)]
)
def test_validation_keeps_within_a_fifth_of_training(
    clock: Clock, epoch_s: float, validation_s: float, period: int
) -> None:
    trainer: Any = SimpleNamespace(check_val_every_n_epoch=1)
    callback = AdaptiveValidation(share=0.2)
    callback.on_train_epoch_start(trainer, None)  # type: ignore[arg-type]
    clock.now += epoch_s
    callback.on_validation_epoch_start(trainer, None)  # type: ignore[arg-type]
    clock.now += validation_s
    callback.on_validation_epoch_end(trainer, None)  # type: ignore[arg-type]
    assert callback.period == period == trainer.check_val_every_n_epoch
    clock.now += 100.0  # later validations do not change the decision
    callback.on_validation_epoch_start(trainer, None)  # type: ignore[arg-type]
    callback.on_validation_epoch_end(trainer, None)  # type: ignore[arg-type]
    assert trainer.check_val_every_n_epoch == period


def test_the_decay_ends_where_the_budget_ends(clock: Clock) -> None:
    schedule = BudgetedCosine(total_steps=100 * 10)  # planned: 100 epochs of 10 steps
    module = SimpleNamespace(lr_schedule=schedule)
    trainer: Any = SimpleNamespace(current_epoch=0, max_epochs=100, num_training_batches=10)
    planner = BudgetPlanner(budget_s=300.0)
    planner.on_train_start(trainer, module)  # type: ignore[arg-type]
    clock.now = 30.0  # the first epoch took 30 s: the budget affords 10 epochs
    planner.on_train_epoch_end(trainer, module)  # type: ignore[arg-type]
    assert schedule.total_steps == 10 * 10
    assert schedule(100) == 0.0


def test_without_a_binding_budget_the_plan_stays(clock: Clock) -> None:
    schedule = BudgetedCosine(total_steps=5 * 10)
    module = SimpleNamespace(lr_schedule=schedule)
    trainer: Any = SimpleNamespace(current_epoch=0, max_epochs=5, num_training_batches=10)
    planner = BudgetPlanner(budget_s=300.0)
    planner.on_train_start(trainer, module)  # type: ignore[arg-type]
    clock.now = 1.0
    planner.on_train_epoch_end(trainer, module)  # type: ignore[arg-type]
    assert schedule.total_steps == 50  # reproducible: nothing time-dependent happened
