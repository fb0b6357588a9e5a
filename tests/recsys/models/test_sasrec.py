"""The SASRec backbone: causality, padding invariance, attention weights, config round trip."""

from __future__ import annotations

import pytest
import torch

from recsys.errors import ConfigError
from recsys.models import SASRec, SASRecConfig
from recsys.models.layers import Tokens


@pytest.fixture
def model() -> SASRec:
    torch.manual_seed(0)
    return SASRec(SASRecConfig(num_items=30, max_len=8, hidden_size=16, n_heads=2)).eval()


def test_a_position_never_sees_the_future(model: SASRec) -> None:
    items = torch.tensor([[3, 5, 7, 9, 11, 13]])
    changed = items.clone()
    changed[0, 4:] = torch.tensor([20, 21])
    original, altered = model(items), model(changed)
    assert torch.allclose(original[:, :4], altered[:, :4], atol=1e-6)
    assert not torch.allclose(original[:, 4:], altered[:, 4:], atol=1e-3)


def test_padding_does_not_change_outputs(model: SASRec) -> None:
    items = torch.tensor([[4, 8, 15, 16]])
    padded = torch.tensor([[0, 0, 0, 0, 4, 8, 15, 16]])
    assert torch.allclose(model(items), model(padded)[:, 4:], atol=1e-5)
    assert not torch.isnan(model(padded)).any()
    # What the padding slots hold must not matter either (they are masked keys).
    assert torch.allclose(model.score_next(items), model.score_next(padded), atol=1e-5)


def test_batch_rows_are_independent(model: SASRec) -> None:
    batch = torch.tensor([[0, 0, 2, 3], [5, 6, 7, 8]])
    assert torch.allclose(model(batch)[1:], model(batch[1:]), atol=1e-6)


@pytest.mark.parametrize("norm_first", [True, False])
def test_newest_position_alone_equals_the_full_forward(norm_first: bool) -> None:
    """Scoring computes only the newest position in the last block: the same hidden state."""
    torch.manual_seed(1)
    config = SASRecConfig(
        num_items=30, max_len=8, hidden_size=16, n_heads=2, n_blocks=3, norm_first=norm_first
    )
    model = SASRec(config).eval()
    batches = [
        # padded rows of every length, a full one, padding inside a row, padding only
        torch.tensor(
            [
                [0, 0, 0, 4, 8, 15, 16, 23],
                [1, 2, 3, 4, 5, 6, 7, 8],
                [0] * 7 + [9],
                [0, 0, 5, 0, 6, 0, 0, 7],
                [0] * 8,
            ]
        ),
        torch.tensor([[1, 2, 3], [4, 5, 6]]),  # no padding: nothing is left out
    ]
    for items in batches:
        with torch.no_grad():
            full = model(items)[:, -1, :]
            assert torch.allclose(model.last_hidden(items), full, atol=1e-5)
            assert torch.allclose(model.score_next(items), model.item_scores(full), atol=1e-4)
        scripted = torch.jit.script(model)
        with torch.no_grad():
            assert torch.allclose(scripted.last_hidden(items), full, atol=1e-5)


def test_tokens_keep_real_items_and_each_newest_position() -> None:
    items = torch.tensor([[0, 0, 3, 4], [0, 5, 0, 6], [0, 0, 0, 0]])
    tokens = Tokens(items)
    assert tokens.where.tolist() == [2, 3, 5, 7, 11]
    assert tokens.newest.tolist() == [1, 3, 4]  # the rows' newest tokens among the five
    packed = torch.arange(10.0).view(5, 2)
    grid = tokens.to_grid(packed)
    assert grid.shape == (3, 4, 2)
    assert grid[0, 2].tolist() == [0.0, 1.0] and grid[2, 3].tolist() == [8.0, 9.0]
    assert grid[1, 2].tolist() == [0.0, 0.0]  # left out: zeros
    assert torch.equal(tokens.from_grid(grid), packed)


def test_scores_never_recommend_padding(model: SASRec) -> None:
    scores = model.score_next(torch.tensor([[1, 2, 3]]))
    assert scores.shape == (1, 31)
    assert torch.isneginf(scores[0, 0])
    assert torch.isfinite(scores[0, 1:]).all()


def test_padding_embedding_is_zero_and_gets_no_gradient() -> None:
    model = SASRec(SASRecConfig(num_items=10, max_len=4, hidden_size=8))
    assert model.item_embedding.weight[0].abs().sum() == 0
    model(torch.tensor([[0, 1, 2]])).sum().backward()
    grad = model.item_embedding.weight.grad
    assert grad is not None and grad[0].abs().sum() == 0 and grad[1].abs().sum() > 0


def test_last_attention_is_a_distribution_over_real_items(model: SASRec) -> None:
    weights = model.last_attention(torch.tensor([[0, 0, 4, 5, 6]]))
    assert weights.shape == (1, 2, 5)
    assert torch.allclose(weights.sum(-1), torch.ones(1, 2), atol=1e-6)
    assert (weights[0, :, :2] == 0).all()  # no attention to padding


def test_too_long_sequences_are_refused(model: SASRec) -> None:
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones(1, 9, dtype=torch.long))


def test_scripted_model_matches_eager(model: SASRec) -> None:
    scripted = torch.jit.script(model)
    items = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    assert torch.allclose(scripted.score_next(items), model.score_next(items), atol=1e-6)
    assert torch.allclose(scripted.last_attention(items), model.last_attention(items), atol=1e-6)


def test_config_round_trips(model: SASRec) -> None:
    rebuilt = SASRec.from_config(model.get_config())
    assert rebuilt.get_config() == model.get_config()
    rebuilt.load_state_dict(model.state_dict())
    items = torch.tensor([[1, 2, 3]])
    assert torch.allclose(rebuilt.eval()(items), model(items))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_heads": 3, "hidden_size": 16}, r"n_heads \(3\) must divide hidden_size \(16\)"),
        ({"max_len": 0}, r"max_len \(--max-len\): must be >= 1, got 0"),
        ({"dropout": 1.0}, r"dropout \(--dropout\): must be in \[0.0, 1.0\)"),
    ],
)
def test_impossible_configs_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SASRecConfig(num_items=5, **kwargs)  # type: ignore[arg-type]


def test_unknown_config_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown SASRec config keys: heads"):
        SASRecConfig.from_dict({"num_items": 5, "heads": 2})


def test_item_dropout_drops_whole_items_in_training_only() -> None:
    torch.manual_seed(0)
    config = SASRecConfig(num_items=9, max_len=4, hidden_size=8, dropout=0.0, item_dropout=0.5)
    model = SASRec(config)
    items = torch.tensor([[1, 2, 3, 4]] * 64)
    positions = model.position_embedding.weight  # [L, H]: what a dropped item leaves
    model.train()
    embedded = model._embed(items)  # [B, L, H]
    dropped = torch.isclose(embedded, positions.expand_as(embedded)).all(dim=-1)  # [B, L]
    assert 0.3 < dropped.float().mean().item() < 0.7  # about half the items, whole vectors
    kept = ~dropped
    full = model.item_embedding(items) * config.hidden_size**0.5 + positions
    assert torch.allclose(embedded[kept], full[kept])
    model.eval()
    assert torch.allclose(model._embed(items), full)  # never at inference
