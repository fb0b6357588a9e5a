"""The large-catalogue optimiser: the lazy row update equals torch's SparseAdam, leaves rows no step
read untouched, clips with dense gradients as one norm, and resumes from its state."""

from __future__ import annotations

import io

import torch
import torch.nn.functional as F

from recsys.training.optim import SparseRowsAdamW, clip_grad_norm_

LR = 0.01
BETAS = (0.9, 0.98)


def _sparse_backward(table: torch.Tensor, head: torch.Tensor, rows: torch.Tensor) -> None:
    """A loss over ``rows`` of ``table`` (repeats included) through a dense ``head``."""
    looked_up = F.embedding(rows, table, sparse=True)  # [R, H]
    (looked_up @ head).square().sum().backward()  # type: ignore[no-untyped-call]


def _steps() -> list[torch.Tensor]:
    return [torch.tensor([1, 3, 3, 7]), torch.tensor([0, 3, 5]), torch.tensor([7, 7, 2])]


def test_without_catch_up_the_lazy_update_is_sparse_adams_and_the_dense_one_adamws() -> None:
    torch.manual_seed(0)
    table, head = torch.randn(10, 4), torch.randn(4, 3)
    ours = [torch.nn.Parameter(table.clone()), torch.nn.Parameter(head.clone())]
    sparse_ref = torch.nn.Parameter(table.clone())
    dense_ref = torch.nn.Parameter(head.clone())
    optimizer = SparseRowsAdamW(ours, lr=LR, betas=BETAS, weight_decay=0.0, catch_up=False)
    references = [
        torch.optim.SparseAdam([sparse_ref], lr=LR, betas=BETAS),
        torch.optim.AdamW([dense_ref], lr=LR, betas=BETAS, weight_decay=0.0),
    ]
    for rows in _steps():
        for optim in (optimizer, *references):
            optim.zero_grad()
        _sparse_backward(ours[0], ours[1], rows)
        _sparse_backward(sparse_ref, dense_ref, rows)
        assert ours[0].grad is not None and ours[0].grad.is_sparse
        optimizer.step()
        for reference in references:
            reference.step()
        torch.testing.assert_close(ours[0].detach(), sparse_ref.detach())
        torch.testing.assert_close(ours[1].detach(), dense_ref.detach())
        assert ours[0].grad is not None and ours[0].grad.is_sparse  # given back after the step


def test_rows_no_gradient_reached_keep_their_values_even_with_weight_decay() -> None:
    torch.manual_seed(0)
    table = torch.nn.Parameter(torch.randn(10, 4))
    head = torch.nn.Parameter(torch.randn(4, 3))
    before = table.detach().clone()
    optimizer = SparseRowsAdamW([table, head], lr=LR, weight_decay=0.1)
    touched: set[int] = set()
    for rows in _steps():
        optimizer.zero_grad()
        _sparse_backward(table, head, rows)
        optimizer.step()
        touched |= set(rows.tolist())
    untouched = sorted(set(range(10)) - touched)
    assert untouched  # 4, 6, 8, 9
    torch.testing.assert_close(table.detach()[untouched], before[untouched], rtol=0, atol=0)
    assert not torch.equal(table.detach()[sorted(touched)], before[sorted(touched)])


def test_a_resumed_optimiser_takes_the_same_next_step() -> None:
    torch.manual_seed(0)
    table, head = torch.randn(10, 4), torch.randn(4, 3)
    first = [torch.nn.Parameter(table.clone()), torch.nn.Parameter(head.clone())]
    optimizer = SparseRowsAdamW(first, lr=LR)
    steps = _steps()
    for rows in steps[:2]:
        optimizer.zero_grad()
        _sparse_backward(first[0], first[1], rows)
        optimizer.step()
    second = [torch.nn.Parameter(p.detach().clone()) for p in first]
    resumed = SparseRowsAdamW(second, lr=LR)
    saved = io.BytesIO()
    torch.save(optimizer.state_dict(), saved)  # as a checkpoint holds it
    saved.seek(0)
    resumed.load_state_dict(torch.load(saved))
    for params, optim in ((first, optimizer), (second, resumed)):
        optim.zero_grad()
        _sparse_backward(params[0], params[1], steps[2])
        optim.step()
    torch.testing.assert_close(second[0].detach(), first[0].detach(), rtol=0, atol=0)
    torch.testing.assert_close(second[1].detach(), first[1].detach(), rtol=0, atol=0)


def test_sparse_and_dense_gradients_are_clipped_as_one_norm() -> None:
    torch.manual_seed(0)
    table = torch.nn.Parameter(torch.randn(10, 4))
    head = torch.nn.Parameter(torch.randn(4, 3))
    _sparse_backward(table, head, torch.tensor([1, 3, 3, 7]))  # row 3 twice: summed
    assert table.grad is not None and head.grad is not None
    dense_table, dense_head = table.grad.to_dense(), head.grad.clone()
    expected = torch.cat([dense_table.flatten(), dense_head.flatten()]).norm()

    total = clip_grad_norm_([table, head], max_norm=1.0)

    torch.testing.assert_close(total, expected)
    assert table.grad.is_sparse
    scale = 1.0 / (float(expected) + 1e-6)
    torch.testing.assert_close(table.grad.to_dense(), dense_table * scale)
    torch.testing.assert_close(head.grad, dense_head * scale)
    clipped = torch.cat([table.grad.to_dense().flatten(), head.grad.flatten()]).norm()
    assert abs(float(clipped) - 1.0) < 1e-4


def test_gradients_under_the_limit_are_left_as_they_are() -> None:
    table = torch.nn.Parameter(torch.full((5, 2), 0.01))
    head = torch.nn.Parameter(torch.full((2, 2), 0.01))
    _sparse_backward(table, head, torch.tensor([1, 2]))
    assert table.grad is not None
    before = table.grad.to_dense().clone()
    clip_grad_norm_([table, head], max_norm=100.0)
    torch.testing.assert_close(table.grad.to_dense(), before, rtol=0, atol=0)


def _train(table: torch.nn.Parameter, optimizer: torch.optim.Optimizer, dense: bool) -> None:
    """300 steps, each reading 3 of 40 rows (rare rows, as a large catalogue's), a fixed target."""
    generator = torch.Generator().manual_seed(1)
    target = torch.randn(40, 4, generator=generator)
    for _ in range(300):
        rows = torch.randperm(40, generator=generator)[:3]
        optimizer.zero_grad()
        looked_up = F.embedding(rows, table, sparse=True)
        (looked_up - target[rows]).square().sum().backward()  # type: ignore[no-untyped-call]
        if dense:
            assert table.grad is not None
            table.grad = table.grad.to_dense()
        optimizer.step()


def test_catch_up_follows_dense_adamw_where_the_plain_lazy_update_lags() -> None:
    torch.manual_seed(0)
    start = torch.randn(40, 4)
    paths = {}
    for name in ("dense", "catch-up", "lazy"):
        table = torch.nn.Parameter(start.clone())
        optimizer: torch.optim.Optimizer
        if name == "dense":
            optimizer = torch.optim.AdamW([table], lr=LR, betas=BETAS, weight_decay=0.01)
        else:
            catch_up = name == "catch-up"
            optimizer = SparseRowsAdamW(
                [table], lr=LR, betas=BETAS, weight_decay=0.01, catch_up=catch_up
            )
        _train(table, optimizer, dense=name == "dense")
        paths[name] = table.detach() - start
    moved = float(paths["dense"].norm())
    assert float((paths["catch-up"] - paths["dense"]).norm()) < 0.05 * moved
    assert float((paths["lazy"] - paths["dense"]).norm()) > 0.3 * moved  # what catch-up fixes
