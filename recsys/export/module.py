"""``RecommenderModule``: the scriptable wrapper that becomes an artifact's ``model.ts``.

It wraps a ``SASRec`` backbone and does everything a server needs inside the module, so that the
serving side loads it with ``torch.jit.load`` and nothing of this project: window truncation,
top-k with exclusions (given lists, the history itself, an allow-list), the explanation weights
and raw scores. Inputs are checked here too, because a TorchScript caller gets no Python-side
validation: a wrong dtype, rank or an out-of-range index raises a ``RuntimeError`` saying which
argument is wrong, never an opaque indexing failure deep in the model.

Shape letters: B batch, L given history length (any), L' = min(L, max_len), E excluded items per
row, A allowed items per row, K list length, N heads, V catalogue size (indices 1..V; 0 = padding).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from recsys.export.topk import BLOCK, blocked_topk, padded_width
from recsys.models import SASRec


class RecommenderModule(nn.Module):
    """Top-k recommendations, explanations and raw scores from a SASRec backbone."""

    def __init__(self, backbone: SASRec) -> None:
        super().__init__()
        self.backbone = _with_padded_catalogue(backbone)
        self.max_len = int(backbone.config.max_len)
        self.num_items = int(backbone.config.num_items)
        self.topk_block = BLOCK

    def forward(
        self,
        items: Tensor,
        k: int,
        exclude: Tensor,
        exclude_history: bool,
        allow: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Top-``k`` items after each sequence, best first: (indices int64 [B, K], scores [B, K]).

        ``items`` [B, L]: right-aligned, 0-left-padded, newest last; only the last ``max_len``
        are read by the model, but ``exclude_history`` excludes every item of the whole row.
        ``exclude`` [B, E] (0-padded, E may be 0): never returned. ``allow`` [B, A] (0-padded):
        if given, the only candidates. ``k`` is clamped to V. Padding is never returned; slots
        with no eligible item left hold index 0 and score -inf.
        """
        items = self._checked("items", items)
        batch = items.size(0)
        exclude = self._checked("exclude", exclude)
        if exclude.size(0) != batch:
            raise RuntimeError(
                f"exclude must have one row per items row: got {exclude.size(0)} rows for {batch}"
            )
        if k < 1:
            raise RuntimeError(f"k must be >= 1, got {k}")
        k = min(k, self.num_items)
        with torch.no_grad():
            # A fresh tensor, so the in-place exclusions below touch no state of the model;
            # column 0 (padding) and the block padding are already -inf.
            scores = self._padded_scores(self._window(items))  # [B, C]
            scores.scatter_(1, exclude, float("-inf"))
            if exclude_history:
                scores.scatter_(1, items, float("-inf"))
            if allow is not None:
                allow = self._checked("allow", allow)
                if allow.size(0) != batch:
                    raise RuntimeError(
                        f"allow must have one row per items row: got {allow.size(0)} rows for "
                        f"{batch}"
                    )
                allowed = torch.zeros_like(scores, dtype=torch.bool)  # [B, C]
                allowed.scatter_(1, allow, True)
                scores.masked_fill_(~allowed, float("-inf"))
            # [B, K] each, best first
            top_scores, top_indices = blocked_topk(scores, k, self.topk_block)
            top_indices = top_indices.masked_fill(top_scores == float("-inf"), 0)
        return top_indices, top_scores

    @torch.jit.export
    def explain(self, items: Tensor) -> tuple[Tensor, Tensor]:
        """The last block's attention of the newest position over the window it reads.

        Returns (per head [B, N, L'], mean over heads [B, L']) for the last L' = min(L, max_len)
        columns of ``items``: 0 at padding positions, each row summing to 1 over the real items
        (a row of padding only is all 0).
        """
        window = self._window(self._checked("items", items))  # [B, L']
        with torch.no_grad():
            per_head = self.backbone.last_attention(window).float()  # [B, N, L']
            per_head = per_head * (window != 0).unsqueeze(1).to(per_head.dtype)
            if items.size(1) == 0:  # the window is one padding column: nothing to explain
                per_head = per_head[:, :, :0]
            return per_head, per_head.mean(dim=1)

    @torch.jit.export
    def scores(self, items: Tensor) -> Tensor:
        """Scores of every item as the next one: [B, L] -> float32 [B, V + 1], column 0 -inf."""
        window = self._window(self._checked("items", items))
        with torch.no_grad():
            return self._padded_scores(window)[:, : self.num_items + 1].contiguous()

    @torch.jit.export
    def user_vectors(self, items: Tensor) -> Tensor:
        """What each row's next item is scored against: [B, L] -> float32 [B, H]; an item's
        score is the inner product with its row of ``item_vectors`` (what an index searches)."""
        window = self._window(self._checked("items", items))
        with torch.no_grad():
            return self.backbone.last_hidden(window).float()

    @torch.jit.export
    def item_vectors(self) -> Tensor:
        """The item embedding, items 1..V: float32 [V, H] (row r is item r + 1)."""
        weight = self.backbone.item_embedding.weight
        return weight[1 : self.num_items + 1].detach().float()

    def _padded_scores(self, window: Tensor) -> Tensor:
        """[B, L'] -> float32 [B, C]: every item's score as the next one, -inf for padding."""
        scores = self.backbone.score_next(window).float()  # [B, C], column 0 already -inf
        scores[:, self.num_items + 1 :] = float("-inf")
        return scores

    def _checked(self, name: str, values: Tensor) -> Tensor:
        """A 2-D integer tensor of indices in 0..V, as int64; anything else raises."""
        if values.dim() != 2:
            raise RuntimeError(
                f"{name} must be a 2-D tensor [batch, length], got {values.dim()} dimensions"
            )
        if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
            raise RuntimeError(f"{name} must hold integer item indices (int64), not float or bool")
        values = values.to(torch.int64)
        if values.numel() > 0:
            bounds = torch.aminmax(values)
            low = int(bounds[0])
            high = int(bounds[1])
            if low < 0 or high > self.num_items:
                bad = low if low < 0 else high
                raise RuntimeError(
                    f"{name} holds item index {bad}, outside 0..{self.num_items} (0 is padding)"
                )
        return values

    def _window(self, items: Tensor) -> Tensor:
        """The last ``max_len`` columns; an empty history becomes one padding column."""
        if items.size(1) == 0:
            return torch.zeros(items.size(0), 1, dtype=torch.int64, device=items.device)
        if items.size(1) > self.max_len:
            return items[:, -self.max_len :]
        return items


def _with_padded_catalogue(backbone: SASRec) -> SASRec:
    """A copy of ``backbone`` (the caller's model is left as it is) whose item embedding has zero
    rows appended up to a multiple of the top-k block size, so that scores come out [B, C] ready
    for ``blocked_topk`` with no copy. The extra rows are never looked up (``_checked`` bounds
    every index by V) and their scores are set to -inf; the embedding is not duplicated."""
    padded = copy.deepcopy(backbone).eval()
    weight = padded.item_embedding.weight.detach()  # [V + 1, H]
    rows = padded_width(weight.size(0))
    table = torch.zeros(rows, weight.size(1), dtype=weight.dtype, device=weight.device)
    table[: weight.size(0)] = weight
    padded.item_embedding.weight = nn.Parameter(table, requires_grad=False)
    padded.item_embedding.num_embeddings = rows
    return padded
