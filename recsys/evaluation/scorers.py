"""What the evaluation ranks with: the ``Scorer`` protocol, and a backbone as a scorer.

A scorer maps right-aligned history windows to a score for every item; the evaluation code knows
nothing else about it, so a model checkpoint, an exported artifact or a baseline go through the
same code path. Anything with ``name``, ``max_len`` and this ``__call__`` is a scorer. Scorers
that read files live with their readers: ``recsys.training.checkpoint_scorer`` (a training
checkpoint) and ``recsys.export.artifact_scorer`` (an exported artifact).

Shape letters: B batch, L window length (<= ``max_len``), V catalogue size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch

from recsys.models import SASRec


@runtime_checkable
class Scorer(Protocol):
    """``(history_windows: LongTensor[B, L]) -> FloatTensor[B, V + 1]``.

    Windows hold item indices, newest last, left-padded with 0, at most ``max_len`` wide. Column
    0 of the scores (padding) is ``-inf``. Scores may live on any device; higher is better.
    """

    @property
    def name(self) -> str:
        """Label in reports and ``metrics.json``."""
        ...

    @property
    def max_len(self) -> int:
        """Longest window the scorer reads (1 for scorers that only look at the last item)."""
        ...

    def __call__(self, history_windows: torch.Tensor) -> torch.Tensor: ...


@dataclass(eq=False)
class ModelScorer:
    """A ``SASRec`` backbone in eval mode, scoring on ``device``."""

    model: SASRec
    name: str = "sasrec"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        self.model = self.model.to(self.device).eval()

    @property
    def max_len(self) -> int:
        return int(self.model.config.max_len)

    def __call__(self, history_windows: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.score_next(history_windows.to(self.device))  # [B, V + 1]
