"""The optimiser for a large item table: AdamW for dense gradients, a row update for sparse ones.

With ``embedding_updates: sparse`` the item embedding's gradient is a sparse tensor holding only
the rows a step touched (its history items, targets and negatives: a few thousand of a million).
Dense AdamW would still read and write the whole table and both its moments every step, a cost
that grows with the catalogue, not the batch (``bench/results/train_scaling.md``).

``torch.optim.SparseAdam`` updates only those rows but takes only sparse-gradient parameters,
Lightning's automatic optimisation drives one optimiser (two would mean manual optimisation for
every run), and its lazy update trains rare items far more slowly than dense AdamW (see
``SparseRowsAdamW``). So this is one ``AdamW`` whose ``step`` first updates the rows of the
parameters whose gradient is sparse (SparseAdam's arithmetic, a test checks equality, plus a
closed-form catch-up on the steps a row missed), then runs the fused AdamW step on the rest.
Its state lives in the one optimiser, so checkpoints and resumes need nothing new.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch


class SparseRowsAdamW(torch.optim.AdamW):
    """AdamW, except that a parameter with a sparse gradient is updated only in the rows present
    in the gradient.

    With ``catch_up`` (the default) a row that comes back after k steps without a gradient first
    gets, in closed form, the k updates dense AdamW would have made meanwhile: its momentum keeps
    moving it (by ``m / sqrt(v)`` times a geometric series in ``beta1 / sqrt(beta2)``, at the
    current rate and bias corrections), its moments decay by ``beta^k``, and weight decay applies
    k times. This matters: in dense Adam one gradient of a rare item moves it about ten times
    further through the momentum of the steps after it than in the step itself, so the plain
    lazy update (``catch_up=False``, exactly ``torch.optim.SparseAdam``'s, as tested) trains rare
    items as if at a tenth of the rate; on a million-item log it lost almost half the HR@10
    (``bench/results/scale.md``). What catch-up leaves out (eps inside the skipped steps, the
    rate's and bias corrections' drift over them) is small; a test bounds it against dense AdamW.
    A row no gradient has reached yet has zero moments and stays where it is.
    """

    def __init__(self, params: Any, *args: Any, catch_up: bool = True, **kwargs: Any) -> None:
        super().__init__(params, *args, **kwargs)
        self.catch_up = catch_up

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        held: list[tuple[torch.Tensor, torch.Tensor]] = []
        try:
            for group in self.param_groups:
                for parameter in group["params"]:
                    grad = parameter.grad
                    if grad is None or not grad.is_sparse:
                        continue
                    self._update_rows(parameter, grad, group)
                    held.append((parameter, grad))
                    parameter.grad = None  # AdamW skips a parameter without a gradient
            super().step()
        finally:
            for parameter, grad in held:
                parameter.grad = grad
        return loss

    def _update_rows(
        self, parameter: torch.Tensor, grad: torch.Tensor, group: dict[str, Any]
    ) -> None:
        if group["maximize"]:
            raise ValueError("SparseRowsAdamW does not maximise")
        grad = grad.coalesce()  # one entry per row, duplicates summed
        rows = grad.indices()[0]  # [R]
        values = grad.values()  # [R, H]
        state = self.state[parameter]
        if "exp_avg" not in state:  # AdamW's keys: its load_state_dict expects them
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
        if "row_step" not in state:  # the step each row last had a gradient (0: never)
            state["row_step"] = torch.zeros(parameter.size(0), dtype=torch.int64)
        state["step"] = state["step"] + 1  # a new tensor: a loaded state may share the old one
        step = float(state["step"])
        beta1, beta2 = group["betas"]
        lr, decay = float(group["lr"]), float(group["weight_decay"])
        scale = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)  # rate x bias corrections
        exp_avg = state["exp_avg"].index_select(0, rows)
        exp_avg_sq = state["exp_avg_sq"].index_select(0, rows)
        weights = parameter.index_select(0, rows)
        # int64 again after a resume (load_state_dict casts state to the parameter's dtype)
        row_step = state["row_step"].to(device=rows.device, dtype=torch.int64)
        if self.catch_up:
            seen = row_step.index_select(0, rows)  # [R]
            skipped = (step - 1 - seen).clamp_min(0).where(seen > 0, 0).to(weights.dtype)
            if bool((skipped > 0).any()):
                self._catch_up(weights, exp_avg, exp_avg_sq, skipped, group, scale, lr, decay)
        row_step.index_fill_(0, rows, int(step))
        state["row_step"] = row_step
        exp_avg.mul_(beta1).add_(values, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(values, values, value=1 - beta2)
        state["exp_avg"].index_copy_(0, rows, exp_avg)
        state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
        update = exp_avg.div_(exp_avg_sq.sqrt_().add_(group["eps"])).mul_(scale)
        if decay:
            weights.mul_(1 - lr * decay)
        weights.sub_(update)
        parameter.index_copy_(0, rows, weights)

    @staticmethod
    def _catch_up(
        weights: torch.Tensor,
        exp_avg: torch.Tensor,
        exp_avg_sq: torch.Tensor,
        skipped: torch.Tensor,
        group: dict[str, Any],
        scale: float,
        lr: float,
        decay: float,
    ) -> None:
        """Apply in place (on the gathered rows) the ``skipped`` [R] zero-gradient AdamW steps
        each row missed: sum_j scale * m beta1^j / sqrt(v beta2^j) = scale * m / sqrt(v) *
        r (1 - r^k) / (1 - r), r = beta1 / sqrt(beta2); moments decayed by beta^k."""
        beta1, beta2 = group["betas"]
        ratio = beta1 / math.sqrt(beta2)
        k = skipped.unsqueeze(1)  # [R, 1]
        series = ratio * (1 - torch.pow(ratio, k)) / (1 - ratio)  # [R, 1]
        drift = exp_avg / (exp_avg_sq.sqrt() + group["eps"])
        if decay:
            weights.mul_(torch.pow(1 - lr * decay, k))
        weights.sub_(drift.mul_(series * scale))
        exp_avg.mul_(torch.pow(beta1, k))
        exp_avg_sq.mul_(torch.pow(beta2, k))


def clip_grad_norm_(parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` (2-norm over every gradient together) that also takes
    sparse gradients, which torch's cannot norm; a sparse gradient is coalesced in place first
    (duplicate rows summed), so its norm is the norm of the gradient it stands for."""
    dense: list[torch.Tensor] = []  # parameters (torch's clipping reads their .grad)
    sparse: list[torch.Tensor] = []  # gradients
    for parameter in parameters:
        if parameter.grad is None:
            continue
        if parameter.grad.is_sparse:
            parameter.grad = parameter.grad.coalesce()
            sparse.append(parameter.grad)
        else:
            dense.append(parameter)
    if not sparse:
        return torch.nn.utils.clip_grad_norm_(dense, max_norm, foreach=True)
    norms = [grad.values().norm().float() for grad in sparse]
    if dense:
        grads = [parameter.grad for parameter in dense if parameter.grad is not None]
        norms.append(torch.nn.utils.get_total_norm(grads, foreach=True).float())
    total = torch.stack(norms).norm()
    if dense:
        torch.nn.utils.clip_grads_with_norm_(dense, max_norm, total, foreach=True)
    coefficient = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for grad in sparse:
        grad.values().mul_(coefficient.to(grad.dtype))
    return total
