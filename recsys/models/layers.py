"""Transformer pieces of SASRec: causal self-attention, point-wise feed-forward, one block.

Everything here is TorchScript-compatible (typed, no ``**kwargs``), because the backbone built
from these blocks is what ``recsys.export`` scripts.

Shape letters: B batch, L sequence length, T tokens kept of the B x L positions (``Tokens``),
H hidden size, N heads, D head size (H / N).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from recsys.models.dropout import FastDropout, fast_dropout


class Tokens:
    """The positions of a right-aligned [B, L] batch whose states the newest positions read:
    every real item and each row's newest column (a row of padding only still has a query).

    Position-wise work (embeddings, projections, feed-forward, norms) runs on these T tokens
    packed as [T, H] rows; only attention needs the [B, L] grid. Histories are much shorter
    than the longest in their batch (most of a batch of real histories is padding), so this
    skips most of the work. On CUDA every position is kept: listing the real ones would wait
    for the device (``nonzero``), and padding costs a GPU little.
    """

    def __init__(self, items: torch.Tensor) -> None:
        batch, length = items.shape
        self.batch = batch
        self.length = length
        if items.is_cuda:
            keep = torch.ones_like(items, dtype=torch.bool)
            where = torch.arange(batch * length, device=items.device)
        else:
            keep = items != 0
            keep[:, -1] = True
            where = keep.flatten().nonzero().squeeze(1)
        self.where = where  # [T] flat grid positions
        self.newest = keep.sum(dim=1).cumsum(dim=0) - 1  # [B] each row's newest token in [T]

    def to_grid(self, packed: torch.Tensor) -> torch.Tensor:
        """[T, C] -> [B, L, C], zeros at the positions left out."""
        width = packed.size(1)
        if packed.size(0) == self.batch * self.length:  # nothing left out
            return packed.view(self.batch, self.length, width)
        grid = packed.new_zeros(self.batch * self.length, width)
        return grid.index_copy_(0, self.where, packed).view(self.batch, self.length, width)

    def from_grid(self, grid: torch.Tensor) -> torch.Tensor:
        """[B, L, C] -> [T, C]."""
        flat = grid.reshape(self.batch * self.length, grid.size(2))
        if self.where.size(0) == flat.size(0):
            return flat
        return flat.index_select(0, self.where)


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
        return self._split_heads(self.qkv(x))

    def _split_heads(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, L, 3H] projections -> q, k, v, each [B, N, L, D]."""
        batch, length, _ = qkv.shape
        q, k, v = qkv.chunk(3, dim=-1)  # 3 x [B, L, H]
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
    def forward_tokens(
        self, x: torch.Tensor, tokens: Tokens, attn_mask: torch.Tensor
    ) -> torch.Tensor:
        """``forward`` (eval) over packed tokens: [T, H] -> [T, H].

        The projections run on the tokens only; attention runs on the [B, L] grid, where the
        left-out positions are zero vectors that no kept query attends (``attention_mask``).
        """
        q, k, v = self._split_heads(tokens.to_grid(self.qkv(x)))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # [B, N, L, D]
        y = y.transpose(1, 2).reshape(tokens.batch, tokens.length, x.size(1))  # [B, L, H]
        return self.proj(tokens.from_grid(y))

    @torch.jit.export
    def forward_newest(
        self, x: torch.Tensor, tokens: Tokens, attn_mask: torch.Tensor
    ) -> torch.Tensor:
        """``forward_tokens`` for each row's newest position's query only: [T, H] -> [B, H]."""
        q, k, v = self._split_heads(tokens.to_grid(self.qkv(x)))
        y = F.scaled_dot_product_attention(q[:, :, -1:, :], k, v, attn_mask=attn_mask[:, :, -1:, :])
        return self.proj(y.transpose(1, 2).reshape(tokens.batch, x.size(1)))  # [B, H]

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
        return self._around_attention(x, self.attention(self._attention_input(x), attn_mask))

    @torch.jit.export
    def forward_tokens(
        self, x: torch.Tensor, tokens: Tokens, attn_mask: torch.Tensor
    ) -> torch.Tensor:
        """``forward`` over packed tokens: [T, H] -> [T, H] (see ``Tokens``)."""
        attended = self.attention.forward_tokens(self._attention_input(x), tokens, attn_mask)
        return self._around_attention(x, attended)

    @torch.jit.export
    def forward_newest(
        self, x: torch.Tensor, tokens: Tokens, attn_mask: torch.Tensor
    ) -> torch.Tensor:
        """The block's output at each row's newest position only: [T, H] -> [B, H].

        Keys and values still come from every token; the query, the residuals and the
        feed-forward are computed for the newest one only (what next-item scoring reads).
        """
        attended = self.attention.forward_newest(self._attention_input(x), tokens, attn_mask)
        return self._around_attention(x.index_select(0, tokens.newest), attended)

    @torch.jit.export
    def last_query_weights(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """The attention weights this block's last position uses: [B, N, L]."""
        return self.attention.last_query_weights(self._attention_input(x), attn_mask)

    def _attention_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention_norm(x) if self.norm_first else x

    def _around_attention(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """The residuals, norms and feed-forward around the attention output ``attended`` of
        the positions ``x`` holds (pre- or post-LayerNorm)."""
        if self.norm_first:
            x = x + self.dropout(attended)
            return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
        x = self.attention_norm(x + self.dropout(attended))
        return self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))


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
