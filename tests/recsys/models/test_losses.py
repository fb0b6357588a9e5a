"""Losses: negatives never equal positives, and each loss can be driven down."""

from __future__ import annotations

import math

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
from recsys.models.losses import SharedCandidateSoftmax, matching_cells, owned_cells


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
    negatives = torch.tensor([2, 3, 3, 8, 9, 11])  # 3 (twice) and 2 are some rows' positives
    correction = torch.rand(6, dtype=torch.float64) if corrected else None
    clash = negatives.unsqueeze(0) == targets.unsqueeze(1)
    rows, columns = matching_cells(negatives, targets)
    cells = sorted(zip(rows.tolist(), columns.tolist(), strict=True))
    assert cells == [tuple(cell) for cell in clash.nonzero().tolist()]

    positive = (hidden * table[targets]).sum(-1)
    fused = SharedCandidateSoftmax.apply(
        hidden, positive, table[negatives], correction, rows, columns
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


def test_owned_cells_are_each_rows_own_items_among_the_negatives() -> None:
    """Brute force: row r (of user u) and negative k pair up iff negatives[k] is one of u's
    items; repeats of an item in a history, and of a negative, are all covered."""
    torch.manual_seed(1)
    user_items = torch.tensor([[0, 0, 4, 7, 4], [1, 2, 3, 5, 6], [0, 0, 0, 0, 9]])
    row_users = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2])  # grouped by user, as training lays out
    negatives = torch.tensor([1, 4, 4, 8, 9, 10])
    rows, columns = owned_cells(negatives, row_users, user_items)
    expected = [
        (row, k)
        for row, user in enumerate(row_users.tolist())
        for k, item in enumerate(negatives.tolist())
        if item in set(user_items[user].tolist()) - {0}
    ]
    assert sorted(zip(rows.tolist(), columns.tolist(), strict=True)) == expected


def test_a_users_own_items_are_masked_out_of_its_negatives() -> None:
    """With the history mask the loss equals the softmax over the other negatives only."""
    torch.manual_seed(2)
    table = torch.randn(7, 3)
    hidden = torch.randn(2, 3)
    targets = torch.tensor([5, 6])
    user_items = torch.tensor([[1, 2, 5], [3, 3, 6]])
    generator = torch.Generator().manual_seed(3)
    loss = sampled_softmax_loss(
        hidden,
        targets,
        table,
        num_negatives=40,  # draws every item 1..6 with near certainty
        generator=generator,
        row_users=torch.tensor([0, 1]),
        user_items=user_items,
    )
    generator = torch.Generator().manual_seed(3)
    drawn = torch.randint(1, 7, (40,), generator=generator).sort().values
    expected = []
    for row in range(2):
        owned = set(user_items[row].tolist()) | {int(targets[row])}
        kept = torch.tensor([item for item in drawn.tolist() if item not in owned])
        logits = torch.cat(
            [hidden[row] @ table[targets[row]].unsqueeze(1), hidden[row] @ table[kept].t()]
        )
        expected.append(-torch.log_softmax(logits, 0)[0])
    assert torch.isclose(loss, torch.stack(expected).mean(), atol=1e-6)


def test_full_softmax_leaves_a_users_other_items_out_but_keeps_the_positive() -> None:
    torch.manual_seed(4)
    table, hidden = torch.randn(6, 3), torch.randn(2, 3)
    targets = torch.tensor([2, 4])
    user_items = torch.tensor([[1, 2, 0], [3, 4, 5]])
    loss = full_softmax_loss(hidden, targets, table, torch.tensor([0, 1]), user_items)
    logits = hidden @ table[1:].t()
    logits[0, 0] = float("-inf")  # user 0's item 1 (item 2 is its positive)
    logits[1, [2, 4]] = float("-inf")  # user 1's items 3 and 5 (4 is its positive)
    assert torch.isclose(loss, torch.nn.functional.cross_entropy(logits, targets - 1))


def test_the_expected_count_correction_lowers_each_negative_by_log_k_q() -> None:
    """Uniform negatives: each negative logit lowered by log(K / V), the positive untouched."""
    torch.manual_seed(5)
    table, hidden, targets = torch.randn(21, 4), torch.randn(3, 4), torch.tensor([1, 2, 3])
    loss = sampled_softmax_loss(
        hidden,
        targets,
        table,
        num_negatives=8,
        generator=torch.Generator().manual_seed(6),
        expected_count_correction=True,
    )
    drawn = torch.randint(1, 21, (8,), generator=torch.Generator().manual_seed(6)).sort().values
    negative = hidden @ table[drawn].t() - math.log(8 / 20)
    negative = negative.masked_fill(drawn.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
    logits = torch.cat([(hidden * table[targets]).sum(-1, keepdim=True), negative], dim=1)
    expected = torch.nn.functional.cross_entropy(logits, torch.zeros(3, dtype=torch.long))
    assert torch.isclose(loss, expected, atol=1e-6)


def test_with_the_correction_many_negatives_approach_the_full_softmax() -> None:
    """The corrected sampled loss, averaged over draws, is close to the full cross-entropy; the
    uncorrected one is far below it (it sees K items where the softmax has V)."""
    torch.manual_seed(7)
    table, hidden = torch.randn(401, 8) * 0.5, torch.randn(16, 8) * 0.5
    targets = torch.randint(1, 401, (16,))
    full = full_softmax_loss(hidden, targets, table).item()
    generator = torch.Generator().manual_seed(8)

    def mean_loss(corrected: bool) -> float:
        draws = [
            sampled_softmax_loss(
                hidden,
                targets,
                table,
                100,
                generator=generator,
                expected_count_correction=corrected,
            ).item()
            for _ in range(50)
        ]
        return sum(draws) / len(draws)

    assert abs(mean_loss(True) - full) < 0.05 * full
    assert mean_loss(False) < full - 0.5  # log(400 / 100) below, roughly
