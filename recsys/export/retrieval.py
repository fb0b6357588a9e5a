"""Approximate top-k retrieval over the item embeddings, for catalogues too large to score whole.

SASRec scores item ``i`` for a user as the inner product of the user's last hidden state with
row ``i`` of the item embedding, so the top-k is a maximum-inner-product search: an index over
the embedding rows answers it without scoring every item. The index comes from faiss (a
well-kept library of the field), built at export into the artifact (``index.faiss``), with
its search breadth tuned there until the approximate top-10 recalls at least ``min_recall`` of
the exact top-10 on real histories; the recall reached is written to the manifest.

Kinds (``recsys export --index``):

- ``exact``: no index; the model scores every item (the default below ``AUTO_INDEX_ITEMS``).
- ``ivf``: an inverted file over k-means cells (``IndexIVFFlat``): fast to build (seconds at a
  million items), searched ``nprobe`` cells at a time.
- ``hnsw``: a navigable small-world graph (``IndexHNSWFlat``): faster searches, builds that
  take minutes at a million items.
- ``auto``: ``ivf`` from ``AUTO_INDEX_ITEMS`` items on, else ``exact``.

Exclusions stay exact: the search over-fetches ``k`` plus the number of excluded items, the
excluded ones are dropped, and the best ``k`` of the rest are the answer (``top_k``).

Shape letters: B users, H hidden size, V catalogue size, F items fetched per user.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal, get_args

import numpy as np

from recsys.errors import ArtifactError, ConfigError

IndexKind = Literal["auto", "exact", "ivf", "hnsw"]
INDEX_KINDS: tuple[str, ...] = get_args(IndexKind)
INDEX_FILE: Final = "index.faiss"
AUTO_INDEX_ITEMS: Final = 200_000
"""From this catalogue size on, ``auto`` builds an index: scoring every item for one request
costs milliseconds there (``bench/export_latency.py``), which an index cuts to a fraction."""
RECALL_K: Final = 10
HNSW_NEIGHBOURS: Final = 32
HNSW_EF_CONSTRUCTION: Final = 100
MAX_BREADTH: Final = 4096
"""The widest search tuning tries (``nprobe`` cells or ``efSearch`` candidates)."""


def resolve_kind(kind: str, num_items: int) -> str:
    """The index kind ``kind`` means for a catalogue of ``num_items`` (``auto`` decided)."""
    if kind not in INDEX_KINDS:
        raise ConfigError(f"--index {kind!r}: expected one of {', '.join(INDEX_KINDS)}")
    if kind == "auto":
        return "ivf" if num_items >= AUTO_INDEX_ITEMS else "exact"
    return kind


def _faiss() -> Any:
    """faiss, imported on first use: only artifacts with an index need it."""
    import faiss

    return faiss


def build_index(kind: str, item_vectors: np.ndarray, seed: int = 0) -> Any:
    """An index of ``kind`` (``ivf`` or ``hnsw``) over ``item_vectors`` [V, H] (row r is item
    r + 1), inner-product metric."""
    faiss = _faiss()
    vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
    count, width = vectors.shape
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(width, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    elif kind == "ivf":
        cells = max(1, min(count // 39, int(4 * math.sqrt(count))))  # >= 39 points per centroid
        quantizer = faiss.IndexFlatIP(width)
        index = faiss.IndexIVFFlat(quantizer, width, cells, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = vectors[rng.choice(count, min(count, 64 * cells), replace=False)]
        index.cp.seed = seed
        index.train(sample)
    else:
        raise ConfigError(f"no index to build for kind {kind!r}")
    index.add(vectors)
    return index


def set_breadth(index: Any, breadth: int) -> None:
    """How widely a search looks: ``nprobe`` cells (ivf) or ``efSearch`` candidates (hnsw)."""
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = breadth
    else:
        index.nprobe = min(breadth, index.nlist)


def breadth_of(index: Any) -> int:
    return int(index.hnsw.efSearch if hasattr(index, "hnsw") else index.nprobe)


def exact_top(user_vectors: np.ndarray, item_vectors: np.ndarray, k: int) -> np.ndarray:
    """The exact top-``k`` item rows per user: [B, H] x [V, H] -> [B, K], in chunks of users so
    that no more than ~16M scores are held at once."""
    rows = max(1, (1 << 24) // max(1, len(item_vectors)))
    out = np.empty((len(user_vectors), k), dtype=np.int64)
    for start in range(0, len(user_vectors), rows):
        scores = user_vectors[start : start + rows] @ item_vectors.T  # [b, V]
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        out[start : start + rows] = np.take_along_axis(top, order, axis=1)
    return out


def recall_at_k(index: Any, user_vectors: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact top-k rows (``exact`` [B, K]) the index returns in its top-k."""
    k = exact.shape[1]
    _, found = index.search(np.ascontiguousarray(user_vectors, dtype=np.float32), k)
    hits = sum(
        len(set(row.tolist()) & set(want.tolist())) for row, want in zip(found, exact, strict=True)
    )
    return hits / exact.size


def tune_breadth(
    index: Any, user_vectors: np.ndarray, item_vectors: np.ndarray, min_recall: float
) -> dict[str, Any]:
    """Widen the search (doubling) until recall@10 reaches ``min_recall``; returns what was
    chosen and measured. Raises ``ArtifactError`` if even the widest search falls short."""
    k = min(RECALL_K, len(item_vectors))
    exact = exact_top(user_vectors, item_vectors, k)
    breadth = min(16, MAX_BREADTH)
    tried: list[dict[str, float]] = []
    while True:
        set_breadth(index, breadth)
        recall = recall_at_k(index, user_vectors, exact)
        tried.append({"breadth": breadth, "recall": round(recall, 4)})
        if recall >= min_recall:
            break
        if breadth >= MAX_BREADTH:
            raise ArtifactError(
                f"the approximate index reaches recall@{k} {recall:.3f} at most (searching "
                f"{breadth} wide), below --min-recall {min_recall}: use --index exact, or "
                "lower --min-recall"
            )
        breadth *= 2
    started = time.perf_counter()
    index.search(np.ascontiguousarray(user_vectors[:1], dtype=np.float32), k)
    return {
        "breadth": breadth,
        "recall_at_10": round(recall, 4),
        "min_recall": min_recall,
        "recall_users": len(user_vectors),
        "tried": tried,
        "one_search_ms": round(1000 * (time.perf_counter() - started), 3),
    }


def write_index(index: Any, path: Path) -> None:
    _faiss().write_index(index, str(path))


def read_index(path: Path, breadth: int) -> Any:
    """The index at ``path``, searching ``breadth`` wide, single-threaded (a server runs one
    small search per batch; faiss's thread pool would fight the model's threads)."""
    faiss = _faiss()
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
        raise ArtifactError(f"{path} is not a readable faiss index: {first_line}") from err
    faiss.omp_set_num_threads(1)
    set_breadth(index, breadth)
    return index


class ApproximateRetrieval:
    """Top-k over an index, with exclusions exact (over-fetch, then filter)."""

    def __init__(self, index: Any, item_vectors: np.ndarray) -> None:
        """``item_vectors`` [V, H]: the embedding rows the index was built from (row r is item
        r + 1), for the rare user whose over-fetched candidates are nearly all excluded."""
        if int(index.ntotal) != len(item_vectors):
            raise ArtifactError(
                f"the index holds {index.ntotal} items, the catalogue {len(item_vectors)}"
            )
        self.index = index
        self.item_vectors = item_vectors
        self.num_items = len(item_vectors)

    def top_k(
        self, user_vectors: np.ndarray, k: int, exclude: Sequence[Sequence[int]]
    ) -> tuple[list[list[int]], list[list[float]]]:
        """Per user: the best ``k`` item indices (1..V) not in its ``exclude`` row, and their
        scores, best first; fewer than ``k`` only where fewer items are eligible. A user whose
        search came back short after filtering is scored exactly."""
        k = min(k, self.num_items)
        vectors = np.ascontiguousarray(user_vectors, dtype=np.float32)
        excluded = [{index for index in row if index > 0} for row in exclude]
        fetch = min(self.num_items, k + max((len(row) for row in excluded), default=0))
        saved = breadth_of(self.index)
        if hasattr(self.index, "hnsw") and fetch > saved:
            self.index.hnsw.efSearch = fetch  # a graph search returns at most efSearch items
        try:
            scores, rows = self.index.search(vectors, fetch)  # [B, F]; -1: nothing found
        finally:
            set_breadth(self.index, saved)
        indices_out: list[list[int]] = []
        scores_out: list[list[float]] = []
        for user, (found, found_scores, skip) in enumerate(
            zip(rows.tolist(), scores.tolist(), excluded, strict=True)
        ):
            picked = [
                (row + 1, score)
                for row, score in zip(found, found_scores, strict=True)
                if row >= 0 and row + 1 not in skip
            ][:k]
            if len(picked) < min(k, self.num_items - len(skip)):
                picked = self._exact(vectors[user], k, skip)
            indices_out.append([index for index, _ in picked])
            scores_out.append([score for _, score in picked])
        return indices_out, scores_out

    def _exact(self, vector: np.ndarray, k: int, skip: set[int]) -> list[tuple[int, float]]:
        scores = self.item_vectors @ vector  # [V]
        if skip:
            scores[np.fromiter(skip, dtype=np.int64) - 1] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        return [(int(row) + 1, float(scores[row])) for row in top if np.isfinite(scores[row])]
