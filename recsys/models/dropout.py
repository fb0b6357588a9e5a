"""Dropout whose CPU masks cost a fraction of torch's.

On a CPU, ``torch.nn.Dropout`` draws one Bernoulli sample per element from the Mersenne-Twister
generator; in SASRec's training step (nine dropouts over [batch, length, hidden] tensors) that is a
large share of the step (``bench/train_speed.py``). ``fast_dropout`` reads seven uniform bytes out
of each 64-bit random word, so a mask needs a seventh of the draws and no per-element Bernoulli: the
same distribution (keep each element with probability 1 - p, scale the kept ones by 1 / (1 - p))
with the rate rounded to 1/256 (0.5 exactly; 0.1 -> 0.1016). On a GPU torch's own (Philox, fused)
dropout is already fast and is used as is. Seeded like any torch sampling: the same seed gives the
same masks.

TorchScript-compatible (the backbone that holds it is scripted for export); scripted, it is
torch's dropout, since a scripted model only serves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch._jit_internal import is_scripting  # torch.jit re-exports it, untyped


def fast_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Zero each element of ``x`` with probability ``p`` and scale the rest by 1 / (1 - p)."""
    if not training or p == 0.0:
        return x
    levels = 256  # a mask element compares one random byte
    keep_below = int(round((1.0 - p) * levels))  # keep where the byte < keep_below
    if is_scripting() or x.is_cuda or keep_below <= 0 or keep_below >= levels:
        # A GPU's own dropout is fast; so is a rate the bytes cannot express. A scripted model
        # only serves (no dropout), so it keeps torch's.
        return F.dropout(x, p, True)
    return _byte_mask_dropout(x, keep_below, levels)


@torch.jit.unused
def _byte_mask_dropout(x: Tensor, keep_below: int, levels: int) -> Tensor:
    bytes_per_word = 7  # random_() on int64 fills [0, 2**63): its low seven bytes are unbiased
    count = x.numel()
    words = torch.empty(
        (count + bytes_per_word - 1) // bytes_per_word, dtype=torch.int64, device=x.device
    ).random_()
    uniform_bytes = words.view(torch.uint8).view(-1, 8)[:, :bytes_per_word]  # little-endian
    keep = (uniform_bytes < keep_below).reshape(-1)[:count].view(x.shape)
    return x * keep.to(x.dtype) * (levels / keep_below)


class FastDropout(nn.Module):
    """``nn.Dropout`` with ``fast_dropout``'s CPU masks (no parameters: checkpoints unchanged)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return fast_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
