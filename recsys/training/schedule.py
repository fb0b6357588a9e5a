"""The learning-rate schedule: linear warm-up, then cosine decay over the run's *budget*.

A run stops at ``max_epochs`` or at its time budget (``max_minutes``), whichever comes first, and
which one comes first depends on the machine and the data. A cosine over the epochs alone would
be cut off mid-way by the clock on a slow machine (the rate still high when training stops); one
over the clock alone would stop decaying early on a fast one. Progress is therefore the larger of
the two fractions (steps done / planned steps, time spent / time budget), so the rate reaches
zero exactly when the run ends, whichever limit ends it (the schedule of Loshchilov & Hutter's
SGDR, one cycle, with the budget as its length).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class BudgetedCosine:
    """``factor(step)`` for ``torch.optim.lr_scheduler.LambdaLR``: warm-up, then cosine to 0.

    >>> schedule = BudgetedCosine(total_steps=100, warmup_steps=10)
    >>> [round(schedule(step), 3) for step in (0, 9, 10, 55, 100)]
    [0.091, 0.909, 1.0, 0.5, 0.0]
    >>> clock = iter([0.0, 30.0]).__next__  # started at 0 s, asked at 30 s of a 60 s budget
    >>> round(BudgetedCosine(1000, 0, budget_s=60.0, clock=clock)(10), 3)
    0.5
    """

    def __init__(
        self,
        total_steps: int,
        warmup_steps: int = 0,
        budget_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total_steps = max(1, total_steps)
        self.warmup_steps = min(max(0, warmup_steps), self.total_steps - 1)
        self.budget_s = budget_s
        self.clock = clock
        self.started = clock()

    def progress(self, step: int) -> float:
        """Fraction of the run done after warm-up, by steps or by the clock, in [0, 1]."""
        steps = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        spent = 0.0
        if self.budget_s:
            spent = (self.clock() - self.started) / self.budget_s
        return min(1.0, max(steps, spent, 0.0))

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        return 0.5 * (1.0 + math.cos(math.pi * self.progress(step)))
