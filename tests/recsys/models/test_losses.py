"""Losses: negatives never equal positives, and each loss can be driven down."""

from __future__ import annotations

import pytest
import torch

from recsys.models import (
    SASRec,
    SASRecConfig,
    bce_loss,
    full_softmax_loss,
    sample_negatives,
    sampled_softmax_loss,
)
from recsys.models.losses import SharedCandidateSoftmax, clashes


def test_sampled_negatives_never_equal_their_positive() -> None:
    positives = torch.randint(1, 4, (5000,))
    negatives = sample_negatives(positives, num_items=3)
    assert not (negatives == positives).any()
    assert negatives.min() >= 1 and negatives.max() <= 3


def test_shared_negative_equal_to_the_positive_is_masked() -> None:
    # One-item catalogue: every negative is the positive, so all are masked and the loss is 0.
    embedding = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    hidden = torch.tensor([[0.5, -1.0], [3.0, 1.0]])
    loss = sampled_softmax_loss(hidden, torch.tensor([1, 1]), embedding, num_negatives=16)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_full_softmax_matches_a_hand_computation() -> None:
    embedding = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    hidden = torch.tensor([[2.0, 1.0]])
    expected = -torch.log_softmax(torch.tensor([2.0, 1.0]), dim=0)[1]
    assert torch.isclose(full_softmax_loss(hidden, torch.tensor([2]), embedding), expected)


def test_popularity_sampling_with_log_q_is_finite() -> None:
    embedding = torch.randn(11, 4)
    probs = torch.cat([torch.zeros(1), torch.arange(1.0, 11.0)])
    probs = probs / probs.sum()
    loss = sampled_softmax_loss(
        torch.randn(6, 4), torch.randint(1, 11, (6,)), embedding, 8, sampling_probs=probs
    )
    assert torch.isfinite(loss)


@pytest.mark.parametrize("loss_name", ["bce", "bce-8", "sampled_softmax", "ce"])
def test_each_loss_decreases_on_a_learnable_sequence(loss_name: str) -> None:
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(num_items=20, max_len=6, hidden_size=16, dropout=0.0))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    # Item i is always followed by item i + 1: a deterministic next-item rule.
    starts = torch.randint(1, 14, (64, 1))
    sequences = starts + torch.arange(7)
    inputs, targets = sequences[:, :-1], sequences[:, 1:]

    def loss_value() -> torch.Tensor:
        hidden = model(inputs).reshape(-1, 16)
        flat = targets.reshape(-1)
        weight = model.item_embedding.weight
        if loss_name.startswith("bce"):
            negatives = int(loss_name.partition("-")[2] or 1)
            return bce_loss(hidden, flat, weight, negatives_per_target=negatives)
        if loss_name == "sampled_softmax":
            return sampled_softmax_loss(hidden, flat, weight, num_negatives=10)
        return full_softmax_loss(hidden, flat, weight)

    first = loss_value().item()
    for _ in range(60):
        optimizer.zero_grad()
        loss_value().backward()
        optimizer.step()
    assert loss_value().item() < 0.5 * first


def test_bce_with_several_negatives_averages_their_terms() -> None:
    hidden, weight = torch.randn(5, 4), torch.randn(9, 4)
    targets = torch.tensor([1, 2, 3, 8, 8])
    loss = bce_loss(hidden, targets, weight, torch.Generator().manual_seed(1), 3)
    negatives = sample_negatives(
        targets.unsqueeze(-1).expand(-1, 3), 8, torch.Generator().manual_seed(1)
    )
    assert negatives.shape == (5, 3) and not (negatives == targets.unsqueeze(-1)).any()
    positive = -torch.nn.functional.logsigmoid((hidden * weight[targets]).sum(-1)).mean()
    negative_logits = (hidden.unsqueeze(1) * weight[negatives]).sum(-1)  # [5, 3]
    negative = -torch.nn.functional.logsigmoid(-negative_logits).mean()
    assert float(loss) == pytest.approx(float(positive + negative), rel=1e-5)
    with pytest.raises(ValueError, match="negatives_per_target"):
        bce_loss(hidden, targets, weight, negatives_per_target=0)


@pytest.mark.parametrize("corrected", [False, True])
def test_the_fused_sampled_softmax_equals_the_reference_formula(corrected: bool) -> None:
    """Value and every gradient match F.cross_entropy over the concatenated logits, with the
    log-Q correction and a negative equal to a row's positive masked out."""
    torch.manual_seed(0)
    hidden = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    table = torch.randn(12, 5, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([1, 2, 3, 4, 5, 6, 3])
    negatives = torch.tensor([3, 8, 9, 11, 3, 2])  # 3 and 2 clash with some rows' positives
    correction = torch.rand(6, dtype=torch.float64) if corrected else None
    clash = negatives.unsqueeze(0) == targets.unsqueeze(1)
    rows, row_clash = clashes(negatives, targets, num_items=11)
    assert rows.tolist() == [1, 2, 6] and torch.equal(row_clash, clash[rows])

    positive = (hidden * table[targets]).sum(-1)
    fused = SharedCandidateSoftmax.apply(
        hidden, positive, table[negatives], correction, rows, row_clash
    )
    weights = torch.rand(7, dtype=torch.float64)  # a weighted mean exercises per-row gradients
    (fused * weights).sum().backward()
    fused_grads = (hidden.grad.clone(), table.grad.clone())  # type: ignore[union-attr]
    hidden.grad, table.grad = None, None

    negative_logits = hidden @ table[negatives].t()
    if correction is not None:
        negative_logits = negative_logits - correction
    negative_logits = negative_logits.masked_fill(clash, float("-inf"))
    logits = torch.cat([(hidden * table[targets]).sum(-1, keepdim=True), negative_logits], 1)
    reference = torch.nn.functional.cross_entropy(
        logits, torch.zeros(7, dtype=torch.long), reduction="none"
    )
    (reference * weights).sum().backward()
    assert torch.allclose(fused, reference)
    assert torch.allclose(fused_grads[0], hidden.grad)  # type: ignore[arg-type]
    assert torch.allclose(fused_grads[1], table.grad)  # type: ignore[arg-type]
