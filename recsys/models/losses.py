"""Training losses over the hidden states at positions that carry a target.

Only target positions are scored (padding never is), so the full-catalogue ``ce`` pays for
[targets x V] logits, not [B x L x V].

Shape letters: T number of target positions in the batch, H hidden size, V catalogue size,
K shared negatives.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

LossName = Literal["bce", "sampled_softmax", "ce"]
LOSSES: tuple[str, ...] = ("bce", "sampled_softmax", "ce")


def gather_rows(table: torch.Tensor, indices: torch.Tensor, sparse: bool) -> torch.Tensor:
    """``table[indices]``; with ``sparse`` its gradient is a sparse tensor of the rows read, not a
    dense [V + 1, H] one (``embedding_updates: sparse``, ``recsys.training.optim``)."""
    if sparse:
        return F.embedding(indices, table, sparse=True)
    return table[indices]


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
    sparse_rows: bool = False,
) -> torch.Tensor:
    """The paper's loss: binary cross-entropy of the positive and a sampled negative.

    With ``negatives_per_target`` K > 1 each target gets K uniform negatives whose BCE terms are
    averaged: the same push on negatives as the paper's one (K = 1 is exactly the paper), with
    less variance. hidden: [T, H]; targets: [T]; item_embedding: [V + 1, H]. ``sparse_rows``:
    the embedding's gradient is sparse (``gather_rows``).
    """
    if negatives_per_target < 1:
        raise ValueError(f"negatives_per_target must be >= 1, got {negatives_per_target}")
    repeated = targets.unsqueeze(-1).expand(-1, negatives_per_target)  # [T, K]
    negatives = sample_negatives(repeated, item_embedding.size(0) - 1, generator)  # [T, K]
    positive_logits = (hidden * gather_rows(item_embedding, targets, sparse_rows)).sum(-1)  # [T]
    negative_rows = gather_rows(item_embedding, negatives, sparse_rows)  # [T, K, H]
    negative_logits = torch.einsum("th,tkh->tk", hidden, negative_rows)  # [T, K]
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
    row_users: torch.Tensor | None = None,
    user_items: torch.Tensor | None = None,
    expected_count_correction: bool = False,
    sparse_rows: bool = False,
) -> torch.Tensor:
    """Softmax over the positive and K negatives shared by the whole batch.

    Negatives are uniform, or drawn from ``sampling_probs`` ([V + 1], zero at padding). With
    ``expected_count_correction`` each negative's logit is lowered by the log of its expected count
    in the sample, log(K * q): the K negatives then stand for the whole catalogue and the loss
    estimates the full softmax's (Bengio & Senecal 2008; Jean et al. 2015), where without it a
    positive ranked above K random items already looks nearly won. Without it, popularity sampling
    subtracts log q from the positive's and every negative's logit (removing the sampler's
    popularity bias), and uniform sampling corrects nothing. A negative equal to a row's positive is
    masked out of that row. With ``row_users`` [T] (the batch row each target comes from) and
    ``user_items`` [B, L] (each row's items, 0-padded), a negative that is one of the row's own
    items is masked out too: inference excludes what the user already has (``exclude_seen``), so
    training need not push those items down.
    """
    num_items = item_embedding.size(0) - 1
    if sampling_probs is None:
        negatives = torch.randint(1, num_items + 1, (num_negatives,), generator=generator)
    else:
        negatives = torch.multinomial(
            sampling_probs.cpu(), num_negatives, replacement=True, generator=generator
        )
    negatives = negatives.to(targets.device).sort().values  # [K], sorted: cells are searched
    # One gather for positives and negatives: a dense gather's backward fills a [V + 1, H]
    # gradient, a cost that grows with the catalogue (a sparse one's does not).
    every_row = torch.cat([targets, negatives])
    gathered = gather_rows(item_embedding, every_row, sparse_rows)  # [T + K, H]
    positives, candidates = gathered[: len(targets)], gathered[len(targets) :]
    positive_logits = (hidden * positives).sum(-1)  # [T]
    correction: torch.Tensor | None = None
    if expected_count_correction:
        if sampling_probs is None:  # q = 1 / V for every item
            correction = torch.full_like(
                negatives, math.log(num_negatives / num_items), dtype=hidden.dtype
            )
        else:
            log_q = sampling_probs.to(hidden.device).clamp_min(1e-12).log()
            correction = log_q[negatives] + math.log(num_negatives)  # [K]
    elif sampling_probs is not None:
        log_q = sampling_probs.to(hidden.device).clamp_min(1e-12).log()
        positive_logits = positive_logits - log_q[targets]
        correction = log_q[negatives]  # [K]
    rows, columns = matching_cells(negatives, targets)  # a negative that is the positive
    if row_users is not None and user_items is not None:
        owned_rows, owned_columns = owned_cells(negatives, row_users, user_items)
        rows, columns = torch.cat([rows, owned_rows]), torch.cat([columns, owned_columns])
    losses: torch.Tensor = SharedCandidateSoftmax.apply(  # type: ignore[no-untyped-call]
        hidden, positive_logits, candidates, correction, rows, columns
    )
    return losses.mean()


def matching_cells(
    sorted_candidates: torch.Tensor, items: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (i, k) with ``items[i] == sorted_candidates[k]``: two [M] index tensors.

    Matches are few (about N * K / V), so they are found by binary search, never as an [N, K]
    comparison; a candidate drawn twice matches twice.

    >>> matching_cells(torch.tensor([2, 5, 5, 9]), torch.tensor([5, 3, 9]))
    (tensor([0, 0, 2]), tensor([1, 2, 3]))
    """
    left = torch.searchsorted(sorted_candidates, items, side="left")  # [N]
    counts = torch.searchsorted(sorted_candidates, items, side="right") - left  # [N]
    rows = torch.repeat_interleave(torch.arange(len(items), device=items.device), counts)
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)  # [M]
    offsets = torch.arange(len(rows), device=items.device) - starts
    return rows, torch.repeat_interleave(left, counts) + offsets


def owned_cells(
    sorted_candidates: torch.Tensor, row_users: torch.Tensor, user_items: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (target row, k) where candidate k is one of that row's user's items."""
    users, columns = matching_cells(sorted_candidates, user_items.reshape(-1))
    users = torch.div(users, user_items.size(1), rounding_mode="floor")  # flat index -> user
    pairs = torch.unique(users * len(sorted_candidates) + columns)  # a user's repeats once
    users, columns = pairs // len(sorted_candidates), pairs % len(sorted_candidates)
    # Target rows are grouped by user, in order: user b owns rows first[b] .. first[b + 1] - 1.
    per_user = torch.bincount(row_users, minlength=user_items.size(0))  # [B]
    first = torch.cumsum(per_user, 0) - per_user  # [B]
    counts = per_user[users]
    starts = torch.repeat_interleave(first[users], counts)
    group_starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    rows = starts + torch.arange(int(counts.sum()), device=row_users.device) - group_starts
    return rows, torch.repeat_interleave(columns, counts)


class SharedCandidateSoftmax(torch.autograd.Function):
    """Per-target cross-entropy of a positive logit against K candidates shared by all targets,
    with the [T, K] logits computed, normalised and differentiated in one buffer.

    The same value and gradients as ``F.cross_entropy`` over ``cat([positive, hidden @ candidates.T
    - correction])`` (the ``clash`` cells of rows ``clash_rows`` at -inf), but the autograd version
    makes five passes over the [T, K] logits and allocates three more such matrices (the
    concatenation, the log-softmax, its gradient); this keeps one buffer that becomes the softmax in
    place, and two matrix products read it back. On a CPU that is most of a sampled-softmax step
    (``bench/train_speed.py``). Not twice differentiable.

    hidden [T, H], positive [T], candidates [K, H], correction [K] or None, masked_rows [M] and
    masked_columns [M] -> losses [T].
    """

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        positive: torch.Tensor,
        candidates: torch.Tensor,
        correction: torch.Tensor | None,
        masked_rows: torch.Tensor,
        masked_columns: torch.Tensor,
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
        if masked_rows.numel():
            logits.index_put_((masked_rows, masked_columns), logits.new_tensor(float("-inf")))
        accumulate = torch.promote_types(positive.dtype, torch.float32)  # float32 at least
        positive = positive.to(accumulate)
        # The shift for a stable exp, held in the buffer's type so that the [T, K] pass runs in
        # it (a float32 operand would make bf16 arithmetic take the slow promoting path); the
        # same rounded shift goes into the positive's term and the loss, so nothing is lost.
        shift = torch.maximum(logits.amax(dim=1).to(accumulate), positive).to(logits.dtype)
        top = shift.to(accumulate)  # [T]
        probs = logits.sub_(shift.unsqueeze(1)).exp_()  # [T, K], unnormalised, in place
        positive_exp = (positive - top).exp()  # [T]
        # Summed in the buffer's type (accumulated in float32 inside the kernel either way;
        # asking for a float32 result would first copy the whole [T, K] buffer to float32).
        total = probs.sum(dim=1).to(accumulate) + positive_exp  # [T]
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
    hidden: torch.Tensor,
    targets: torch.Tensor,
    item_embedding: torch.Tensor,
    row_users: torch.Tensor | None = None,
    user_items: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy over the whole catalogue (padding excluded): [T, H] x [V + 1, H].

    With ``row_users`` and ``user_items`` (as ``sampled_softmax_loss``), a row's own items other
    than its positive are left out of its softmax.
    """
    logits = hidden @ item_embedding[1:].t()  # [T, V], column j is item j + 1
    if row_users is not None and user_items is not None:
        catalogue = torch.arange(1, item_embedding.size(0), device=targets.device)
        rows, columns = owned_cells(catalogue, row_users, user_items)
        keep = columns != targets[rows] - 1  # never the positive itself
        logits = logits.index_put((rows[keep], columns[keep]), logits.new_tensor(float("-inf")))
    return F.cross_entropy(logits, targets - 1)
