"""Transformer pieces of SASRec: causal self-attention, point-wise feed-forward, one block.

Everything here is TorchScript-compatible (typed, no ``**kwargs``), because the backbone built
from these blocks is what ``recsys.export`` scripts.

Shape letters: B batch, L sequence length, H hidden size, N heads, D head size (H / N).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from recsys.models.dropout import FastDropout, fast_dropout


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention over a fused QKV projection, using the fused SDPA kernels."""

    def __init__(self, hidden_size: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_size = hidden_size // n_heads
        self.dropout = dropout
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, length, hidden = x.shape
        q, k, v = self.qkv(x).split(hidden, dim=-1)  # 3 x [B, L, H]
        shape = (batch, length, self.n_heads, self.head_size)
        return (
            q.view(shape).transpose(1, 2),  # [B, N, L, D]
            k.view(shape).transpose(1, 2),
            v.view(shape).transpose(1, 2),
        )

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """x: [B, L, H]; attn_mask: [B, 1, L, L] bool, True where a query may attend a key."""
        batch, length, hidden = x.shape
        q, k, v = self._heads(x)
        if self.training and self.dropout > 0.0 and not x.is_cuda:
            # The fused kernels draw attention dropout with torch's slow CPU Bernoulli sampler:
            # the same arithmetic by hand, with fast_dropout's masks.
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size)  # [B, N, L, L]
            scores = scores.masked_fill(~attn_mask, float("-inf"))
            weights = fast_dropout(torch.softmax(scores, dim=-1), self.dropout, True)
            y = weights @ v  # [B, N, L, D]
        else:
            dropout = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        y = y.transpose(1, 2).reshape(batch, length, hidden)  # [B, L, H]
        return self.proj(y)

    @torch.jit.export
    def forward_last(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """``forward`` for the last position's query only: [B, L, H] -> [B, 1, H] (eval)."""
        batch, length, hidden = x.shape
        q, k, v = self._heads(x)
        y = F.scaled_dot_product_attention(q[:, :, -1:, :], k, v, attn_mask=attn_mask[:, :, -1:, :])
        return self.proj(y.transpose(1, 2).reshape(batch, 1, hidden))

    @torch.jit.export
    def last_query_weights(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """Attention weights of the last position over all positions: [B, N, L]."""
        q, k, _ = self._heads(x)
        scores = q[:, :, -1:, :] @ k.transpose(-1, -2) / math.sqrt(self.head_size)  # [B, N, 1, L]
        scores = scores.masked_fill(~attn_mask[:, :, -1:, :], float("-inf"))
        return torch.softmax(scores, dim=-1).squeeze(2)


class PointWiseFeedForward(nn.Module):
    """Two position-wise linear layers with a ReLU, as in the paper."""

    def __init__(self, hidden_size: int, inner_size: int, dropout: float) -> None:
        super().__init__()
        self.inner = nn.Linear(hidden_size, inner_size)
        self.outer = nn.Linear(inner_size, hidden_size)
        self.dropout = FastDropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(self.dropout(F.relu(self.inner(x))))


class TransformerBlock(nn.Module):
    """Self-attention + feed-forward, each with dropout, a residual and LayerNorm (pre or post)."""

    def __init__(
        self, hidden_size: int, n_heads: int, inner_size: int, dropout: float, norm_first: bool
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.attention = CausalSelfAttention(hidden_size, n_heads, dropout)
        self.feed_forward = PointWiseFeedForward(hidden_size, inner_size, dropout)
        self.attention_norm = nn.LayerNorm(hidden_size, eps=1e-8)
        self.feed_forward_norm = nn.LayerNorm(hidden_size, eps=1e-8)
        self.dropout = FastDropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """x: [B, L, H] -> [B, L, H]."""
        if self.norm_first:
            x = x + self.dropout(self.attention(self.attention_norm(x), attn_mask))
            return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
        x = self.attention_norm(x + self.dropout(self.attention(x, attn_mask)))
        return self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))

    @torch.jit.export
    def forward_last(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """The block's output at the last position only: [B, L, H] -> [B, 1, H].

        Keys and values still come from every position; the query, the residuals and the
        feed-forward are computed for the newest one only (what next-item scoring reads).
        """
        last = x[:, -1:, :]  # [B, 1, H]
        if self.norm_first:
            last = last + self.dropout(
                self.attention.forward_last(self.attention_norm(x), attn_mask)
            )
            return last + self.dropout(self.feed_forward(self.feed_forward_norm(last)))
        last = self.attention_norm(last + self.dropout(self.attention.forward_last(x, attn_mask)))
        return self.feed_forward_norm(last + self.dropout(self.feed_forward(last)))

    @torch.jit.export
    def last_query_weights(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """The attention weights this block's last position uses: [B, N, L]."""
        attention_input = self.attention_norm(x) if self.norm_first else x
        return self.attention.last_query_weights(attention_input, attn_mask)


def attention_mask(items: torch.Tensor) -> torch.Tensor:
    """Causal mask that also hides padding keys: [B, L] item indices -> [B, 1, L, L] bool.

    A padding query may still attend to itself, so no softmax row is empty (no NaN); its output
    is never used.
    """
    length = items.size(1)
    causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()  # [L, L]
    diagonal = torch.eye(length, dtype=torch.bool, device=items.device)  # [L, L]
    keys = (items != 0).unsqueeze(1)  # [B, 1, L]
    return (causal & (keys | diagonal)).unsqueeze(1)  # [B, 1, L, L]
