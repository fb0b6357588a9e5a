"""Exact top-k over a wide score matrix in two cheap passes (TorchScript-compatible).

``torch.topk`` over a whole catalogue row is a selection over every column: on a CPU it costs
about as much as computing the scores (``bench/export_latency.py`` times both). Two passes do the
same selection on far fewer values:

1. split each row into blocks of ``BLOCK`` columns and take every block's maximum (a vectorised
   reduction over contiguous memory);
2. keep the ``k`` blocks with the largest maxima, and select the top ``k`` among their columns.

Why it is exact: each of a row's top-k values lies in some block whose maximum is at least that
value. If such a block were not among the ``k`` kept ones, each kept block would hold a value at
least as large (its maximum), which makes ``k + 1`` values at least that large, so it was not in
the top k after all (up to ties, where any choice among equal scores is a correct answer).

Shape letters: B rows, C columns (a multiple of ``BLOCK``), K = k.
"""

from __future__ import annotations

import torch
from torch import Tensor

BLOCK = 128
"""Columns per block. 128 keeps the first pass a contiguous reduction and the second pass small
(k x 128 candidates); rows are padded to a multiple of it by the caller."""


def blocked_topk(scores: Tensor, k: int, block: int) -> tuple[Tensor, Tensor]:
    """(values [B, K], column indices [B, K]) of each row's ``k`` largest scores, best first.

    ``scores`` [B, C] must be contiguous with C a multiple of ``block`` (pad with -inf); callers
    pass ``BLOCK`` (an argument, not the global, because TorchScript cannot read module-level
    ints). Falls back to ``torch.topk`` where the blocks would not save work (k blocks cover a
    quarter of the row or more).
    """
    batch, width = scores.shape
    if width % block != 0:
        raise RuntimeError(f"blocked_topk needs a width that is a multiple of {block}, got {width}")
    if k * block * 4 > width:
        return torch.topk(scores, k, dim=1)
    blocks = scores.view(batch, width // block, block)  # [B, C / block, block]
    _, kept = torch.topk(blocks.amax(dim=2), k, dim=1)  # [B, K] block numbers
    candidates = blocks.gather(1, kept.unsqueeze(2).expand(batch, k, block))  # [B, K, block]
    values, at = torch.topk(candidates.view(batch, k * block), k, dim=1)  # [B, K]
    block_of = kept.gather(1, torch.div(at, block, rounding_mode="floor"))
    return values, block_of * block + at % block


def padded_width(columns: int) -> int:
    """The smallest multiple of ``BLOCK`` that holds ``columns``."""
    return (columns + BLOCK - 1) // BLOCK * BLOCK
