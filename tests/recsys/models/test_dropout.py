"""fast_dropout: torch's dropout distribution with cheap CPU masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from recsys.models.dropout import FastDropout, fast_dropout
from recsys.models.layers import CausalSelfAttention, attention_mask


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.8])
def test_drops_at_the_rate_and_keeps_the_mean(p: float) -> None:
    torch.manual_seed(0)
    out = fast_dropout(torch.ones(400, 500), p, training=True)
    dropped = (out == 0).float().mean().item()
    assert dropped == pytest.approx(round(p * 256) / 256, abs=0.005)
    assert out.mean().item() == pytest.approx(1.0, abs=0.01)
    kept = out[out != 0]
    assert torch.allclose(kept, torch.full_like(kept, 256 / round((1 - p) * 256)))


def test_neighbouring_elements_are_independent() -> None:
    """Seven mask bytes come from one random word: they must not be correlated."""
    torch.manual_seed(1)
    keep = (fast_dropout(torch.ones(700_000), 0.5, training=True) != 0).float()
    for lag in (1, 7, 8):
        a, b = keep[:-lag] - keep.mean(), keep[lag:] - keep.mean()
        correlation = (a * b).mean() / keep.var()
        assert abs(correlation.item()) < 0.01, lag


def test_identity_in_eval_mode_or_at_rate_zero() -> None:
    x = torch.randn(8, 5)
    assert fast_dropout(x, 0.5, training=False) is x
    assert fast_dropout(x, 0.0, training=True) is x
    layer = FastDropout(0.5).eval()
    assert layer(x) is x


def test_the_same_seed_draws_the_same_mask() -> None:
    x = torch.randn(64, 50)
    torch.manual_seed(3)
    first = fast_dropout(x, 0.5, training=True)
    torch.manual_seed(3)
    assert torch.equal(first, fast_dropout(x, 0.5, training=True))
    assert not torch.equal(first, fast_dropout(x, 0.5, training=True))


def test_gradient_flows_through_kept_elements_only() -> None:
    torch.manual_seed(4)
    x = torch.randn(32, 16, requires_grad=True)
    out = fast_dropout(x, 0.5, training=True)
    out.sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad == 0, out.detach() == 0)
    assert torch.allclose(x.grad[x.grad != 0], torch.tensor(2.0))


def test_rates_the_bytes_cannot_express_fall_back_to_torch() -> None:
    torch.manual_seed(5)
    tiny = fast_dropout(torch.ones(10_000), 1e-4, training=True)  # rounds to keep-all
    assert (tiny == 0).float().mean() < 0.001  # not 1/256, the nearest byte level
    assert torch.equal(fast_dropout(torch.ones(100), 1.0, training=True), torch.zeros(100))


def test_the_layer_scripts_and_still_drops() -> None:
    """A scripted model only serves, so scripted the layer is torch's dropout: same contract."""
    scripted = torch.jit.script(FastDropout(0.4))
    x = torch.ones(200, 500)
    assert torch.equal(scripted.eval()(x), x)
    out = scripted.train()(x)
    assert (out == 0).float().mean().item() == pytest.approx(0.4, abs=0.01)


def test_rejects_an_impossible_rate() -> None:
    with pytest.raises(ValueError, match="dropout probability"):
        FastDropout(1.5)


def test_attention_by_hand_matches_the_fused_kernel() -> None:
    """Training on a CPU computes attention by hand (for the cheap dropout masks): with a rate
    that rounds to no dropout it must equal the fused kernel the model uses elsewhere."""
    torch.manual_seed(7)
    attention = CausalSelfAttention(hidden_size=16, n_heads=2, dropout=1e-6)
    items = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    x = torch.randn(2, 5, 16)
    mask = attention_mask(items)
    by_hand = attention.train()(x, mask)
    fused = attention.eval()(x, mask)
    assert torch.allclose(by_hand, fused, atol=1e-5)
    # and the fused reference itself is plain scaled dot-product attention
    q, k, v = attention._heads(x)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(fused, attention.proj(reference.transpose(1, 2).reshape(2, 5, 16)))
