"""The learning-rate schedule: linear warm-up, then cosine decay to zero over the run's *budget*.

A run stops at ``max_epochs`` or at its time budget (``max_minutes``), whichever comes first, and
which one comes first depends on the machine and the data. A cosine over ``max_epochs`` would be
cut off mid-way by the clock on a slow machine (the rate still high when training stops). So
after every epoch the plan is re-made: the epochs the remaining time affords at the pace so far
(validation included), capped by ``max_epochs``; the cosine runs over the planned steps and
reaches zero when the run ends, whichever limit ends it (one cycle of Loshchilov & Hutter's SGDR,
with the budget as its length). Where the budget does not bind, the plan never changes and a
seeded run is reproducible to the bit.
"""

from __future__ import annotations

import math


class BudgetedCosine:
    """``factor(step)`` for ``torch.optim.lr_scheduler.LambdaLR``: warm-up, then cosine to 0 at
    ``total_steps`` (which ``replan`` may move).

    >>> schedule = BudgetedCosine(total_steps=100, warmup_steps=10)
    >>> [round(schedule(step), 3) for step in (0, 9, 10, 55, 100)]
    [0.091, 0.909, 1.0, 0.5, 0.0]
    >>> schedule.replan(55)
    >>> round(schedule(55), 3)
    0.0
    """

    def __init__(self, total_steps: int, warmup_steps: int = 0) -> None:
        self.warmup_steps = max(0, warmup_steps)
        self.total_steps = 1
        self.replan(total_steps)

    def replan(self, total_steps: int) -> None:
        """End the decay at ``total_steps`` (after the warm-up, at least one step)."""
        self.total_steps = max(self.warmup_steps + 1, total_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        progress = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def planned_epochs(
    max_epochs: int, epochs_done: int, elapsed_s: float, budget_s: float | None
) -> int:
    """Epochs the run will have trained when it ends: ``max_epochs``, or fewer where the time
    budget runs out first at the pace so far (always at least one more than done).

    >>> planned_epochs(100, 10, elapsed_s=60.0, budget_s=900.0)  # 6 s an epoch: 140 fit
    100
    >>> planned_epochs(100, 10, elapsed_s=300.0, budget_s=900.0)  # 30 s an epoch: 20 more
    30
    """
    if budget_s is None or epochs_done < 1:
        return max_epochs
    per_epoch = elapsed_s / epochs_done
    affordable = math.floor(max(0.0, budget_s - elapsed_s) / max(per_epoch, 1e-9))
    return max(epochs_done + 1, min(max_epochs, epochs_done + affordable))
