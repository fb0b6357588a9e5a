"""Checks that a scripted module computes what the eager model does, and smoke checks of a loaded
module on its own.

At export time the saved-and-reloaded ``model.ts`` is compared with the eager ``SASRec`` on real
histories: scores within ``SCORE_TOLERANCE``, the same top-k (the reference top-k is computed here
from the eager scores, independently of the module's own top-k code), and the same attention
weights. A small sample of those histories with its expected top-k goes into the manifest, so that
``verify_artifact`` can re-check the module later, on any machine, without the training data.

Shape letters: B batch, L history width, V catalogue size, K list length, N heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from recsys.data import IdVocabulary, right_aligned
from recsys.errors import ArtifactError
from recsys.models import SASRec

SCORE_TOLERANCE = 1e-5
"""Largest absolute score difference allowed between the scripted module and the eager model."""
SMOKE_TOLERANCE = 1e-4
"""Looser bound for re-checking the recorded sample later: another CPU may sum in another order."""
SMOKE_ROWS = 4


@dataclass(frozen=True)
class Agreement:
    """How far a scripted module is from the eager model on one batch."""

    sequences: int
    k: int
    max_score_diff: float
    max_attention_diff: float
    top_k_identical: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "sequences": self.sequences,
            "k": self.k,
            "max_abs_score_diff": self.max_score_diff,
            "max_abs_attention_diff": self.max_attention_diff,
            "top_k_identical": self.top_k_identical,
            "tolerance": SCORE_TOLERANCE,
        }


def eager_top_k(model: SASRec, items: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: eager scores of the last ``max_len`` items, the whole row excluded, top-k."""
    with torch.inference_mode():
        scores = model.score_next(items[:, -model.max_len :]).float()  # [B, V + 1]
        scores.scatter_(1, items, float("-inf"))
        return torch.topk(scores, k, dim=1)


def compare_with_eager(
    scripted: torch.jit.ScriptModule, model: SASRec, items: torch.Tensor, k: int
) -> Agreement:
    """Scripted vs eager on ``items`` [B, L]; raise ``ArtifactError`` if they disagree."""
    model = model.eval()
    window = items[:, -model.max_len :]
    with torch.inference_mode():
        eager_scores = model.score_next(window).float()  # [B, V + 1]
        eager_attention = model.last_attention(window).float()  # [B, N, L']
        eager_attention = eager_attention * (window != 0).unsqueeze(1)
        scripted_scores = scripted.scores(items)
        scripted_attention, _ = scripted.explain(items)
        indices, top_scores = scripted(items, k, torch.zeros(len(items), 0, dtype=torch.long), True)
    reference_scores, reference_indices = eager_top_k(model, items, k)
    if scripted_scores.shape != eager_scores.shape:
        raise ArtifactError(
            f"export verification failed: the scripted module returns scores of shape "
            f"{tuple(scripted_scores.shape)}, the eager model {tuple(eager_scores.shape)}"
        )
    score_diff = _max_abs_diff(scripted_scores, eager_scores)
    attention_diff = _max_abs_diff(scripted_attention, eager_attention)
    top_k_diff = _max_abs_diff(top_scores, reference_scores)
    same_top_k = same_ranking(indices, reference_indices, reference_scores)
    agreement = Agreement(len(items), k, max(score_diff, top_k_diff), attention_diff, same_top_k)
    problems = []
    if agreement.max_score_diff > SCORE_TOLERANCE:
        problems.append(f"scores differ by up to {agreement.max_score_diff:.3g}")
    if attention_diff > SCORE_TOLERANCE:
        problems.append(f"attention weights differ by up to {attention_diff:.3g}")
    if not same_top_k:
        problems.append(f"the top-{k} lists differ")
    if problems:
        raise ArtifactError(
            "export verification failed: the scripted module and the eager model disagree on "
            f"{len(items)} real histories ({'; '.join(problems)}; tolerance {SCORE_TOLERANCE})"
        )
    return agreement


def same_ranking(
    indices: torch.Tensor, reference: torch.Tensor, reference_scores: torch.Tensor
) -> bool:
    """Identical top-k lists, except that items tied in score may swap places."""
    differ = indices != reference  # [B, K]
    if not bool(differ.any()):
        return True
    rows, _ = differ.nonzero(as_tuple=True)
    for row in torch.unique(rows).tolist():
        # Same set, and every mismatch sits among scores tied within the tolerance.
        if set(indices[row].tolist()) != set(reference[row].tolist()):
            return False
        scores = reference_scores[row]
        slots = differ[row].nonzero().flatten()
        if float(scores[slots].max() - scores[slots].min()) > SCORE_TOLERANCE:
            return False
    return True


def smoke_sample(
    scripted: torch.jit.ScriptModule, items: torch.Tensor, k: int, rows: int = SMOKE_ROWS
) -> dict[str, Any]:
    """A few histories (padding stripped) with the module's top-k, for the manifest."""
    histories = [[int(i) for i in row if i != 0] for row in items[:rows].tolist()]
    batch = right_aligned(histories, max((len(h) for h in histories), default=0))
    with torch.inference_mode():
        indices, scores = scripted(batch, k, torch.zeros(len(batch), 0, dtype=torch.long), True)
    return {
        "k": k,
        "exclude_history": True,
        "histories": histories,
        "indices": indices.tolist(),
        "scores": scores.tolist(),
    }


def check_smoke_sample(scripted: torch.jit.ScriptModule, sample: dict[str, Any]) -> dict[str, Any]:
    """Re-run the recorded sample; raise ``ArtifactError`` if the module's answer changed."""
    try:
        histories = sample["histories"]
        batch = right_aligned(histories, max((len(h) for h in histories), default=0))
        k = int(sample["k"])
        expected_indices = torch.tensor(sample["indices"], dtype=torch.long)
        expected_scores = torch.tensor(sample["scores"], dtype=torch.float32)
    except (KeyError, TypeError, ValueError) as err:
        raise ArtifactError(f"the manifest's smoke sample is malformed: {err}") from err
    with torch.inference_mode():
        indices, scores = scripted(batch, k, torch.zeros(len(batch), 0, dtype=torch.long), True)
    diff = _max_abs_diff(scores, expected_scores)
    same = same_ranking(indices, expected_indices, expected_scores)
    if diff > SMOKE_TOLERANCE or not same:
        raise ArtifactError(
            f"smoke inference disagrees with the export-time answer on {len(batch)} histories "
            f"(scores differ by up to {diff:.3g}, top-{k} identical: {same})"
        )
    return {"sequences": len(batch), "k": k, "max_abs_score_diff": diff, "top_k_identical": same}


def external_ids(sample: dict[str, Any], items: IdVocabulary) -> dict[str, Any]:
    """The smoke sample's histories and top-k as external ids ("" for an empty slot), so that
    verification catches an item table whose ids were swapped (the scores, by index, would
    not change)."""

    def as_ids(rows: list[list[int]]) -> list[list[str]]:
        return [["" if i == 0 else str(items.decode([i])[0]) for i in row] for row in rows]

    return {"history_ids": as_ids(sample["histories"]), "top_ids": as_ids(sample["indices"])}


def check_external_ids(sample: dict[str, Any], item_ids: Sequence[str]) -> None:
    """Raise ``ArtifactError`` if the artifact's item table maps the smoke sample's items to
    other external ids than at export (samples of artifacts that predate this record none)."""
    if "top_ids" not in sample:
        return
    try:
        found = [[item_ids[i] for i in row] for row in [*sample["histories"], *sample["indices"]]]
    except (IndexError, TypeError) as err:
        raise ArtifactError(f"the manifest's smoke sample is malformed: {err}") from err
    if found != [*sample["history_ids"], *sample["top_ids"]]:
        raise ArtifactError(
            "the item table maps the smoke sample's items to other ids than at export: "
            "items.parquet was altered (its checksum in the manifest too)"
        )


def check_invariants(scripted: torch.jit.ScriptModule, num_items: int, max_len: int) -> None:
    """What every answer must satisfy, on a few random histories longer than ``max_len``."""
    generator = torch.Generator().manual_seed(0)
    items = torch.randint(1, num_items + 1, (3, max_len + 2), generator=generator)
    items[0, : max_len // 2 + 2] = 0  # a short, padded history
    exclude = torch.randint(1, num_items + 1, (3, 2), generator=generator)
    k = min(10, num_items)
    with torch.inference_mode():
        indices, scores = scripted(items, k, exclude, True)
        per_head, mean = scripted.explain(items)
        all_scores = scripted.scores(items)
    problems = []
    if indices.shape != (3, k) or scores.shape != (3, k):
        problems.append(f"forward returned shapes {tuple(indices.shape)}, {tuple(scores.shape)}")
    elif bool((scores[:, :-1] < scores[:, 1:]).any()):
        problems.append("forward's scores are not sorted best first")
    returned = indices[indices != 0]
    if bool(((returned < 1) | (returned > num_items)).any()):
        problems.append("forward returned an index outside 1..V")
    for row in range(3):
        banned = set(items[row].tolist()) | set(exclude[row].tolist())
        if banned & (set(indices[row].tolist()) - {0}):
            problems.append("forward returned an excluded item")
    if all_scores.shape != (3, num_items + 1) or not bool(torch.isneginf(all_scores[:, 0]).all()):
        problems.append("scores has the wrong shape or a finite padding column")
    window = min(items.size(1), max_len)
    sums = mean.sum(dim=1)
    if mean.shape != (3, window) or not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        problems.append("explain's weights do not sum to 1 over the window")
    if per_head.dim() != 3 or per_head.size(2) != window:
        problems.append(f"explain returned per-head weights of shape {tuple(per_head.shape)}")
    if problems:
        raise ArtifactError("smoke inference failed: " + "; ".join(problems))


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest |a - b| where both are finite; inf if they are not -inf in the same places."""
    if a.shape != b.shape:
        return float("inf")
    finite = torch.isfinite(a)
    if not torch.equal(finite, torch.isfinite(b)):
        return float("inf")
    if not bool(finite.any()):
        return 0.0
    return float((a[finite] - b[finite]).abs().max())
