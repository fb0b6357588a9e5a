"""Training losses over the hidden states at positions that carry a target.

Only target positions are scored (padding never is), so the full-catalogue ``ce`` pays for
[targets x V] logits, not [B x L x V].

Shape letters: T number of target positions in the batch, H hidden size, V catalogue size,
K shared negatives.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

LossName = Literal["bce", "sampled_softmax", "ce"]
LOSSES: tuple[str, ...] = ("bce", "sampled_softmax", "ce")


def sample_negatives(
    positives: torch.Tensor, num_items: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One uniform negative in 1..V per positive, redrawn until it differs from the positive."""
    negatives = torch.randint(1, num_items + 1, positives.shape, generator=generator)
    negatives = negatives.to(positives.device)
    clash = negatives == positives
    while bool(clash.any()):
        redraw = torch.randint(1, num_items + 1, (int(clash.sum()),), generator=generator)
        negatives[clash] = redraw.to(positives.device)
        clash = negatives == positives
    return negatives


def bce_loss(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    item_embedding: torch.Tensor,
    generator: torch.Generator | None = None,
    negatives_per_target: int = 1,
) -> torch.Tensor:
    """The paper's loss: binary cross-entropy of the positive and a sampled negative.

    With ``negatives_per_target`` K > 1 each target gets K uniform negatives whose BCE terms are
    averaged: the same push on negatives as the paper's one (K = 1 is exactly the paper), with
    less variance. hidden: [T, H]; targets: [T]; item_embedding: [V + 1, H].
    """
    if negatives_per_target < 1:
        raise ValueError(f"negatives_per_target must be >= 1, got {negatives_per_target}")
    repeated = targets.unsqueeze(-1).expand(-1, negatives_per_target)  # [T, K]
    negatives = sample_negatives(repeated, item_embedding.size(0) - 1, generator)  # [T, K]
    positive_logits = (hidden * item_embedding[targets]).sum(-1)  # [T]
    negative_logits = torch.einsum("th,tkh->tk", hidden, item_embedding[negatives])  # [T, K]
    return F.binary_cross_entropy_with_logits(
        positive_logits, torch.ones_like(positive_logits)
    ) + F.binary_cross_entropy_with_logits(negative_logits, torch.zeros_like(negative_logits))


def sampled_softmax_loss(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    item_embedding: torch.Tensor,
    num_negatives: int,
    sampling_probs: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Softmax over the positive and K negatives shared by the whole batch.

    With ``sampling_probs`` ([V + 1], zero at padding) negatives are drawn from it and every
    logit gets the log-Q correction (minus the log of its sampling probability), which removes
    the popularity bias of the sampler; without, negatives are uniform and need no correction.
    A negative equal to a row's positive is masked out of that row.
    """
    num_items = item_embedding.size(0) - 1
    if sampling_probs is None:
        negatives = torch.randint(1, num_items + 1, (num_negatives,), generator=generator)
    else:
        negatives = torch.multinomial(
            sampling_probs.cpu(), num_negatives, replacement=True, generator=generator
        )
    negatives = negatives.to(targets.device)  # [K]
    positive_logits = (hidden * item_embedding[targets]).sum(-1)  # [T]
    correction: torch.Tensor | None = None
    if sampling_probs is not None:
        log_q = sampling_probs.to(hidden.device).clamp_min(1e-12).log()
        positive_logits = positive_logits - log_q[targets]
        correction = log_q[negatives]  # [K]
    losses: torch.Tensor = SharedCandidateSoftmax.apply(  # type: ignore[no-untyped-call]
        hidden,
        positive_logits,
        item_embedding[negatives],
        correction,
        *clashes(negatives, targets, num_items),
    )
    return losses.mean()


def clashes(
    candidates: torch.Tensor, targets: torch.Tensor, num_items: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where a shared candidate is the row's own positive: (rows [R], mask [R, K]).

    Only rows whose target is among the candidates can clash (a few: about T * K / V), so the
    mask is built for those rows alone rather than as a [T, K] comparison.
    """
    drawn = torch.zeros(num_items + 1, dtype=torch.bool, device=targets.device)
    drawn[candidates] = True
    rows = drawn[targets].nonzero().squeeze(1)  # [R]
    return rows, candidates.unsqueeze(0) == targets[rows].unsqueeze(1)  # [R], [R, K]


class SharedCandidateSoftmax(torch.autograd.Function):
    """Per-target cross-entropy of a positive logit against K candidates shared by all targets,
    with the [T, K] logits computed, normalised and differentiated in one buffer.

    The same value and gradients as ``F.cross_entropy`` over ``cat([positive, hidden @ candidates.T
    - correction])`` (the ``clash`` cells of rows ``clash_rows`` at -inf), but the autograd version
    makes five passes over the [T, K] logits and allocates three more such matrices (the
    concatenation, the log-softmax, its gradient); this keeps one buffer that becomes the softmax in
    place, and two matrix products read it back. On a CPU that is most of a sampled-softmax step
    (``bench/train_speed.py``). Not twice differentiable.

    hidden [T, H], positive [T], candidates [K, H], correction [K] or None, clash_rows [R] and
    clash [R, K] bool (``clashes``) -> losses [T].
    """

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        positive: torch.Tensor,
        candidates: torch.Tensor,
        correction: torch.Tensor | None,
        clash_rows: torch.Tensor,
        clash: torch.Tensor,
    ) -> torch.Tensor:
        # Under autocast (bf16-mixed) the [T, K] buffer and both products are in the autocast
        # type, sums and the loss in float32; the backward runs outside autocast, so the
        # casts are made here, explicitly, and kept for it.
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        ctx.dtypes = (hidden.dtype, candidates.dtype)
        if dtype is not None:
            hidden, candidates = hidden.to(dtype), candidates.to(dtype)
        logits = hidden @ candidates.t()  # [T, K]
        if correction is not None:
            logits.sub_(correction)
        if clash_rows.numel():
            masked = logits.index_select(0, clash_rows).masked_fill_(clash, float("-inf"))
            logits.index_copy_(0, clash_rows, masked)
        accumulate = torch.promote_types(positive.dtype, torch.float32)  # float32 at least
        positive = positive.to(accumulate)
        top = torch.maximum(logits.amax(dim=1).to(accumulate), positive)  # [T], a stable exp
        probs = logits.sub_(top.unsqueeze(1)).exp_()  # [T, K], unnormalised, in place
        positive_exp = (positive - top).exp()  # [T]
        total = probs.sum(dim=1, dtype=accumulate) + positive_exp  # [T]
        ctx.save_for_backward(hidden, candidates, probs, total, positive_exp)
        return total.log() + top - positive

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, None, None, None]:
        hidden, candidates, probs, total, positive_exp = ctx.saved_tensors
        hidden_dtype, candidates_dtype = ctx.dtypes
        scale = (grad / total).to(probs.dtype)  # [T]
        d_logits = probs.mul_(scale.unsqueeze(1))  # [T, K], the softmax times grad, in place
        d_positive = grad * (positive_exp / total - 1.0)  # [T]
        d_hidden = (d_logits @ candidates).to(hidden_dtype)
        d_candidates = (d_logits.t() @ hidden).to(candidates_dtype)
        return d_hidden, d_positive, d_candidates, None, None, None


def full_softmax_loss(
    hidden: torch.Tensor, targets: torch.Tensor, item_embedding: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy over the whole catalogue (padding excluded): [T, H] x [V + 1, H]."""
    logits = hidden @ item_embedding[1:].t()  # [T, V], column j is item j + 1
    return F.cross_entropy(logits, targets - 1)
