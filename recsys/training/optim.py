"""The optimiser for a large item table: AdamW for dense gradients, a lazy row update for sparse.

With ``embedding_updates: sparse`` the item embedding's gradient is a sparse tensor holding only
the rows a step touched (its history items, targets and negatives: a few thousand of a million).
Dense AdamW would still read and write the whole table and both its moments every step, a cost
that grows with the catalogue, not the batch (``bench/results/train_scaling.md``).

``torch.optim.SparseAdam`` does the lazy update but takes only sparse-gradient parameters, and
Lightning's automatic optimisation drives one optimiser; two would mean manual optimisation for
every run. So this is one ``AdamW`` whose ``step`` first applies SparseAdam's update (the same
arithmetic; a test checks equality) to the parameters whose gradient is sparse, then runs the
fused AdamW step on the rest. Its state lives in the one optimiser, so checkpoints and resumes
need nothing new.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch


class SparseRowsAdamW(torch.optim.AdamW):
    """AdamW, except that a parameter with a sparse gradient gets a lazy Adam update: only the
    rows present in the gradient move, and only their moments decay (as ``torch.optim.SparseAdam``).

    Weight decay, where a group sets it, is applied to those rows only (decoupled, as AdamW's):
    a row no step touches keeps its value.
    """

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
                    self._lazy_step(parameter, grad, group)
                    held.append((parameter, grad))
                    parameter.grad = None  # AdamW skips a parameter without a gradient
            super().step()
        finally:
            for parameter, grad in held:
                parameter.grad = grad
        return loss

    def _lazy_step(
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
        state["step"] = state["step"] + 1  # a new tensor: a loaded state may share the old one
        step = float(state["step"])
        beta1, beta2 = group["betas"]
        lr = float(group["lr"])
        exp_avg = state["exp_avg"].index_select(0, rows)
        exp_avg_sq = state["exp_avg_sq"].index_select(0, rows)
        exp_avg.mul_(beta1).add_(values, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(values, values, value=1 - beta2)
        state["exp_avg"].index_copy_(0, rows, exp_avg)
        state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        denominator = exp_avg_sq.sqrt_().add_(group["eps"])
        update = exp_avg.div_(denominator).mul_(lr * math.sqrt(bias_correction2) / bias_correction1)
        if group["weight_decay"]:
            decayed = parameter.index_select(0, rows).mul_(1 - lr * group["weight_decay"])
            parameter.index_copy_(0, rows, decayed)
        parameter.index_add_(0, rows, update, alpha=-1.0)


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
