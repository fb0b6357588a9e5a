"""``RecommenderModule``: scripted == eager, exclusions, padding, truncation, explanations, and
inputs refused with a message naming the argument."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import torch

from recsys.export import RecommenderModule
from recsys.models import SASRec, SASRecConfig

NUM_ITEMS = 40
MAX_LEN = 6
NO_EXCLUDE = torch.zeros(2, 0, dtype=torch.long)
THREE_ROWS = torch.zeros(3, 1, dtype=torch.long)
FLAT = torch.ones(2, dtype=torch.long)


@pytest.fixture(scope="module")
def eager() -> RecommenderModule:
    torch.manual_seed(3)
    config = SASRecConfig(num_items=NUM_ITEMS, max_len=MAX_LEN, hidden_size=16, n_heads=2)
    return RecommenderModule(SASRec(config)).eval()


@pytest.fixture(scope="module")
def scripted(eager: RecommenderModule) -> torch.jit.ScriptModule:
    return torch.jit.script(eager)


@pytest.fixture
def items() -> torch.Tensor:
    """Two right-aligned histories: a short padded one and one longer than max_len."""
    return torch.tensor([[0, 0, 0, 0, 0, 0, 3, 7, 9], [1, 2, 3, 4, 5, 6, 7, 8, 9]])


def test_scripted_matches_eager(
    eager: RecommenderModule, scripted: torch.jit.ScriptModule, items: torch.Tensor
) -> None:
    exclude = torch.tensor([[5, 0], [11, 12]])
    for allow in (None, torch.tensor([[1, 2, 3, 4, 0], [20, 21, 9, 0, 0]])):
        expected = eager(items, 5, exclude, True, allow)
        got = scripted(items, 5, exclude, True, allow)
        assert torch.equal(got[0], expected[0])
        assert torch.allclose(got[1], expected[1], atol=1e-6)
    assert torch.allclose(scripted.scores(items), eager.scores(items), atol=1e-6)
    for got_weights, expected_weights in zip(
        scripted.explain(items), eager.explain(items), strict=True
    ):
        assert torch.allclose(got_weights, expected_weights, atol=1e-6)
    assert scripted.max_len == MAX_LEN and scripted.num_items == NUM_ITEMS


def test_top_k_is_the_best_of_the_scores(
    scripted: torch.jit.ScriptModule, items: torch.Tensor
) -> None:
    indices, scores = scripted(items, 7, NO_EXCLUDE, False)
    all_scores = scripted.scores(items)
    assert indices.dtype == torch.int64 and scores.dtype == torch.float32
    assert indices.shape == scores.shape == (2, 7)
    expected_scores, expected_indices = torch.topk(all_scores, 7, dim=1)
    assert torch.equal(indices, expected_indices)
    assert torch.equal(scores, expected_scores)
    assert (scores[:, :-1] >= scores[:, 1:]).all()  # best first
    assert (indices != 0).all()  # padding never recommended


def test_exclusions_are_honoured(scripted: torch.jit.ScriptModule, items: torch.Tensor) -> None:
    unfiltered, _ = scripted(items, NUM_ITEMS, NO_EXCLUDE, False)
    banned = unfiltered[:, :3]  # each row's three best items
    indices, _ = scripted(items, NUM_ITEMS, banned, False)
    for row in range(2):
        assert not set(banned[row].tolist()) & set(indices[row].tolist())
        assert set(indices[row].tolist()) - {0} == set(range(1, NUM_ITEMS + 1)) - set(
            banned[row].tolist()
        )
    indices, _ = scripted(items, NUM_ITEMS, NO_EXCLUDE, True)
    # The whole history is excluded, including items 1-3 that lie beyond the max_len window.
    assert not {1, 2, 3, 4, 5, 6, 7, 8, 9} & set(indices[1].tolist())
    assert not {3, 7, 9} & set(indices[0].tolist())


def test_allow_list_restricts_candidates_and_fills_with_padding(
    scripted: torch.jit.ScriptModule, items: torch.Tensor
) -> None:
    allow = torch.tensor([[4, 3, 0, 0], [12, 9, 30, 31]])
    exclude = torch.tensor([[0], [31]])
    indices, scores = scripted(items, 4, exclude, True, allow)
    # Row 0: item 3 is in the history, so only 4 is left; row 1: 9 seen, 31 excluded.
    assert indices[0, 0] == 4 and indices[0, 1:].eq(0).all()
    assert torch.isneginf(scores[0, 1:]).all() and torch.isfinite(scores[0, 0])
    assert set(indices[1, :2].tolist()) == {12, 30} and indices[1, 2:].eq(0).all()


def test_k_is_clamped_to_the_catalogue(
    scripted: torch.jit.ScriptModule, items: torch.Tensor
) -> None:
    indices, scores = scripted(items, 10_000, NO_EXCLUDE, False)
    assert indices.shape == (2, NUM_ITEMS)
    assert sorted(indices[0].tolist()) == list(range(1, NUM_ITEMS + 1))


def test_long_histories_read_only_the_last_max_len_items(
    scripted: torch.jit.ScriptModule, items: torch.Tensor
) -> None:
    window = items[:, -MAX_LEN:]
    assert torch.equal(scripted.scores(items), scripted.scores(window))
    assert torch.equal(
        scripted(items, 5, NO_EXCLUDE, False)[0], scripted(window, 5, NO_EXCLUDE, False)[0]
    )
    # Extra left padding changes nothing either.
    padded = torch.cat([torch.zeros(2, 3, dtype=torch.long), window], dim=1)
    assert torch.allclose(scripted.scores(padded), scripted.scores(window), atol=1e-6)


def test_explanations_weigh_real_items_only(
    scripted: torch.jit.ScriptModule, items: torch.Tensor
) -> None:
    per_head, mean = scripted.explain(items)
    assert per_head.shape == (2, 2, MAX_LEN) and mean.shape == (2, MAX_LEN)
    assert torch.allclose(mean.sum(dim=1), torch.ones(2), atol=1e-6)
    assert torch.allclose(per_head.sum(dim=2), torch.ones(2, 2), atol=1e-6)
    assert (per_head[0, :, :3] == 0).all()  # the three padding positions of the short history
    assert (per_head[0, :, 3:] > 0).all()
    assert torch.allclose(mean, per_head.mean(dim=1))
    short = items[:, -2:]
    assert scripted.explain(short)[1].shape == (2, 2)  # L' = L when L < max_len


def test_empty_histories_still_answer(scripted: torch.jit.ScriptModule) -> None:
    empty = torch.zeros(2, 0, dtype=torch.long)
    indices, scores = scripted(empty, 3, NO_EXCLUDE, True)
    assert indices.shape == (2, 3) and (indices != 0).all() and torch.isfinite(scores).all()
    per_head, mean = scripted.explain(empty)
    assert per_head.shape == (2, 2, 0) and mean.shape == (2, 0)
    only_padding = torch.zeros(1, 4, dtype=torch.long)
    assert (scripted.explain(only_padding)[1] == 0).all()


def test_narrower_integer_dtypes_are_accepted(
    scripted: torch.jit.ScriptModule, items: torch.Tensor
) -> None:
    expected = scripted(items, 5, NO_EXCLUDE, True)[0]
    assert torch.equal(scripted(items.int(), 5, NO_EXCLUDE.int(), True)[0], expected)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, x: m(x[0], 5, NO_EXCLUDE, False), "items must be a 2-D tensor"),
        (lambda m, x: m(x.float(), 5, NO_EXCLUDE, False), "items must hold integer item indices"),
        (lambda m, x: m(x + 100, 5, NO_EXCLUDE, False), "items holds item index 109, outside 0.."),
        (lambda m, x: m(x - 10, 5, NO_EXCLUDE, False), "items holds item index -10"),
        (lambda m, x: m(x, 0, NO_EXCLUDE, False), "k must be >= 1, got 0"),
        (lambda m, x: m(x, 5, torch.tensor([[41], [1]]), False), "exclude holds item index 41"),
        (lambda m, x: m(x, 5, THREE_ROWS, False), "exclude must have one row per items row"),
        (lambda m, x: m(x, 5, NO_EXCLUDE, False, FLAT), "allow must be a 2-D tensor"),
        (lambda m, x: m.explain(x.bool()), "items must hold integer item indices"),
        (lambda m, x: m.scores(x[None]), "items must be a 2-D tensor [batch, length], got 3"),
    ],
)  # fmt: skip
def test_bad_inputs_are_refused_with_a_clear_message(
    eager: RecommenderModule,
    scripted: torch.jit.ScriptModule,
    items: torch.Tensor,
    call: Callable[[Any, torch.Tensor], object],
    message: str,
) -> None:
    # Eager raises RuntimeError; the TorchScript interpreter re-raises it as torch.jit.Error.
    for module in (eager, scripted):
        with pytest.raises((RuntimeError, torch.jit.Error), match=re.escape(message)):
            call(module, items)
