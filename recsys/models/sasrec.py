"""The SASRec backbone (Kang & McAuley, 2018): a plain ``nn.Module``, no Lightning.

This is what training optimises and what ``recsys.export`` scripts, so every method here is
TorchScript-compatible.

Shape letters: B batch, L sequence length (<= max_len), H hidden size, N heads, V catalogue size
(item indices 1..V; 0 is padding).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from recsys.models.config import SASRecConfig
from recsys.models.dropout import FastDropout
from recsys.models.layers import Tokens, TransformerBlock, attention_mask


class SASRec(nn.Module):
    """Item + learned positional embeddings, causal transformer blocks, shared output embedding.

    Sequences are right-aligned: the newest item is the last column, padding (0) on the left.
    Positions count back from the end, so a batch trimmed to its longest sequence gives exactly
    the outputs of the same batch padded to ``max_len``.
    """

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.config = config
        self.max_len = config.max_len
        self.hidden_size = config.hidden_size
        self.item_dropout = config.item_dropout
        self.item_embedding = nn.Embedding(config.num_items + 1, config.hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(config.max_len, config.hidden_size)
        self.embedding_dropout = FastDropout(config.dropout)
        self.blocks = nn.ModuleList(
            [
                TransformerBlock(
                    config.hidden_size,
                    config.n_heads,
                    config.ffn_multiplier * config.hidden_size,
                    config.dropout,
                    config.norm_first,
                )
                for _ in range(config.n_blocks)
            ]
        )
        self.final_norm: nn.Module = (
            nn.LayerNorm(config.hidden_size, eps=1e-8) if config.norm_first else nn.Identity()
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-normal matrices (as the authors' code), zero biases, a zero padding row."""
        for name, parameter in self.named_parameters():
            if parameter.dim() > 1:
                nn.init.xavier_normal_(parameter)
            elif name.endswith("bias"):
                nn.init.zeros_(parameter)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def get_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    @classmethod
    def from_config(cls, values: dict[str, Any]) -> SASRec:
        return cls(SASRecConfig.from_dict(values))

    def _embed(self, items: torch.Tensor) -> torch.Tensor:
        """[B, L] -> [B, L, H]."""
        first = self._first_position(items.size(1))
        positions = torch.arange(first, self.max_len, device=items.device)  # [L]
        return self._embedding(items, positions.unsqueeze(0))

    def _embed_tokens(self, items: torch.Tensor, tokens: Tokens) -> torch.Tensor:
        """[B, L] -> [T, H]: the embeddings of ``tokens`` only."""
        first = self._first_position(tokens.length)
        ids = items.reshape(-1).index_select(0, tokens.where)  # [T]
        return self._embedding(ids, tokens.where % tokens.length + first)

    def _first_position(self, length: int) -> int:
        if length > self.max_len:
            raise ValueError("sequence length exceeds the model's max_len")
        return self.max_len - length

    def _embedding(self, items: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = self.item_embedding(items) * math.sqrt(self.hidden_size)
        if self.training and self.item_dropout > 0.0:
            keep = torch.rand(items.shape, device=items.device) >= self.item_dropout
            x = x * keep.unsqueeze(-1).to(x.dtype)  # a dropped item keeps only its position
        return self.embedding_dropout(x + self.position_embedding(positions))

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """items: [B, L] right-aligned item indices -> hidden states [B, L, H].

        The state at position t depends only on items at positions <= t (causal).
        """
        mask = attention_mask(items)  # [B, 1, L, L]
        x = self._embed(items)
        for block in self.blocks:
            x = block(x, mask)
        return self.final_norm(x)

    @torch.jit.export
    def item_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Dot product with every item embedding: [..., H] -> [..., V + 1]; padding is -inf."""
        scores = hidden @ self.item_embedding.weight.t()
        scores[..., 0] = float("-inf")
        return scores

    @torch.jit.export
    def last_hidden(self, items: torch.Tensor) -> torch.Tensor:
        """The hidden state of the newest position only: [B, L] -> [B, H].

        Equal to ``forward(items)[:, -1]``, with two savings: padding positions are left out
        of all position-wise work (``Tokens``), and the last block computes only the newest
        position's query, residuals and feed-forward (the others are read as keys and values).
        """
        mask = attention_mask(items)  # [B, 1, L, L]
        tokens = Tokens(items)
        x = self._embed_tokens(items, tokens)  # [T, H]
        n_blocks = len(self.blocks)
        for index, block in enumerate(self.blocks):
            # TorchScript knows each block's type; mypy only sees an nn.Module.
            if index == n_blocks - 1:
                x = block.forward_newest(x, tokens, mask)  # type: ignore[operator]
            else:
                x = block.forward_tokens(x, tokens, mask)  # type: ignore[operator]
        return self.final_norm(x)  # [B, H]

    @torch.jit.export
    def score_next(self, items: torch.Tensor) -> torch.Tensor:
        """Scores of every item as the next one after each sequence: [B, L] -> [B, V + 1]."""
        return self.item_scores(self.last_hidden(items))

    @torch.jit.export
    def last_attention(self, items: torch.Tensor) -> torch.Tensor:
        """The last block's attention of the last position over the history: [B, N, L].

        Rows sum to 1 over the non-padding positions; this is the explanation signal.
        """
        mask = attention_mask(items)
        x = self._embed(items)
        n_blocks = len(self.blocks)
        weights = torch.empty(0)
        for index, block in enumerate(self.blocks):
            if index == n_blocks - 1:
                # TorchScript knows each block's type; mypy only sees an nn.Module.
                weights = block.last_query_weights(x, mask)  # type: ignore[operator]
            x = block(x, mask)
        return weights
