"""The artifact folder (format ``recsys.artifact/v1``): its layout, its loader and ``Artifact``.

Layout::

    model.ts        TorchScript ``RecommenderModule`` (forward = top-k, explain, scores)
    items.parquet   item_idx (1..V), item_id (external id as a string), popularity (training
                    interactions, for cold-start fallback)
    manifest.json   format version, model version id, max_len, catalogue size, hyper-parameters,
                    training data fingerprint, metrics, created-at, torch version, the retrieval
                    kind (with an index: its search breadth and measured recall), and the SHA-256
                    of every other file
    index.faiss     only with an approximate retrieval index (``recsys.export.retrieval``)
    manifest.sig    only when signed: Ed25519 over manifest.json (``recsys.export.signing``)

The loader is what the server runs at start-up: it imports nothing of training or evaluation
(only torch, numpy and polars), and it refuses an artifact that is incomplete, altered or of a
format it does not know, with a message naming the file and the problem.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from recsys.errors import ArtifactError
from recsys.export.retrieval import INDEX_FILE, ApproximateRetrieval, read_index
from recsys.export.signing import verify_signature
from recsys.io import sha256_file

ARTIFACT_FORMAT: Final = "recsys.artifact/v1"
MODEL_FILE: Final = "model.ts"
ITEMS_FILE: Final = "items.parquet"
MANIFEST_FILE: Final = "manifest.json"
CHECKSUMMED_FILES: Final = (MODEL_FILE, ITEMS_FILE)
"""Every file the manifest must list with its SHA-256 (the manifest cannot hold its own)."""

ITEM_IDX_COL: Final = "item_idx"
ITEM_ID_COL: Final = "item_id"
POPULARITY_COL: Final = "popularity"
_REQUIRED_KEYS: Final = ("model_version", "max_len", "num_items", "files")


@dataclass(frozen=True)
class Artifact:
    """A loaded, checked artifact: the scripted module plus the item vocabulary and popularity."""

    path: Path
    manifest: dict[str, Any]
    """``manifest.json`` as read."""
    module: torch.jit.ScriptModule
    """``model.ts``, loaded on the CPU, in eval mode."""
    item_ids: list[str]
    """Index -> external item id as a string; ``item_ids[0] == ""`` (padding)."""
    popularity: np.ndarray
    """float64 [V + 1]: interactions in the training split, ``popularity[0] == 0``."""
    retrieval: ApproximateRetrieval | None = None
    """The approximate top-k index, where the artifact has one; None: score every item."""
    _index_of: dict[str, int] = field(init=False, repr=False, compare=False)
    _by_popularity: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index_of = {item_id: index for index, item_id in enumerate(self.item_ids) if index}
        object.__setattr__(self, "_index_of", index_of)
        # Most popular first, ties by index; padding (index 0) never in the list.
        order = np.argsort(-self.popularity[1:], kind="stable") + 1
        object.__setattr__(self, "_by_popularity", order)

    @property
    def model_version(self) -> str:
        """E.g. ``sasrec-20261122T101500Z-1a2b3c4d``: export time + a prefix of model.ts's hash."""
        return str(self.manifest["model_version"])

    @property
    def max_len(self) -> int:
        """Longest history window the model reads (longer histories keep their newest items)."""
        return int(self.manifest["max_len"])

    @property
    def num_items(self) -> int:
        """Catalogue size V (the padding index excluded)."""
        return int(self.manifest["num_items"])

    def to_indices(self, external_ids: Sequence[str]) -> tuple[list[int], list[str]]:
        """(indices of the known ids in the given order, the unknown ids in the given order)."""
        index_of = self._index_of  # a local: this runs for every id of every request
        known: list[int] = []
        unknown: list[str] = []
        for item_id in external_ids:
            index = index_of.get(item_id)
            if index is None:
                unknown.append(item_id)
            else:
                known.append(index)
        return known, unknown

    def to_external(self, indices: Sequence[int]) -> list[str]:
        """Indices (0..V) -> external ids; 0 (padding) maps to ``""``; others raise."""
        ids = self.item_ids
        out: list[str] = []
        for index in indices:
            position = int(index)
            if not 0 <= position < len(ids):
                raise ArtifactError(
                    f"item index {position} is outside the artifact's catalogue 0..{len(ids) - 1}"
                )
            out.append(ids[position])
        return out

    def popular(self, k: int, exclude: Collection[int] = ()) -> list[tuple[int, float]]:
        """The ``k`` most popular items not in ``exclude``: (index, popularity), best first.

        The cold-start fallback; padding is never returned, ties go to the lower index.
        """
        if k <= 0:
            return []
        skip = exclude if isinstance(exclude, set | frozenset) else set(exclude)
        chosen: list[tuple[int, float]] = []
        for index in self._by_popularity:
            if int(index) in skip:
                continue
            chosen.append((int(index), float(self.popularity[index])))
            if len(chosen) == k:
                break
        return chosen


def read_manifest(path: Path) -> dict[str, Any]:
    """``manifest.json`` of an artifact folder, with its format version and keys checked."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(
            f"{path} is not a model artifact: no such folder (create one with `recsys export`)"
        )
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ArtifactError(f"{path} is not a complete model artifact: {MANIFEST_FILE} is missing")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{manifest_path} is not valid JSON: {err}") from err
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{manifest_path} is not a JSON object")
    version = manifest.get("format_version")
    if version != ARTIFACT_FORMAT:
        raise ArtifactError(
            f"{manifest_path}: unknown artifact format version {version!r}; this version reads "
            f"{ARTIFACT_FORMAT!r}"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in manifest]
    if missing:
        raise ArtifactError(f"{manifest_path} lacks the keys {', '.join(missing)}")
    return manifest


def check_files(path: Path, manifest: dict[str, Any], verify_checksums: bool = True) -> None:
    """Every listed file is present and (with ``verify_checksums``) has its recorded SHA-256."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ArtifactError(f"{path / MANIFEST_FILE}: 'files' is not a mapping of file checksums")
    for name in checksummed_files(manifest):
        entry = files.get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise ArtifactError(f"{path / MANIFEST_FILE} records no SHA-256 for {name}")
        file_path = path / name
        if not file_path.is_file():
            raise ArtifactError(f"{file_path} is missing: the artifact is incomplete")
        if verify_checksums:
            actual = sha256_file(file_path)
            if actual != entry["sha256"]:
                raise ArtifactError(
                    f"{file_path} fails its checksum: SHA-256 {actual[:12]}..., the manifest "
                    f"records {entry['sha256'][:12]}... (the file was altered or damaged)"
                )


def load_artifact(
    path: Path, verify_checksums: bool = True, verify_key: Ed25519PublicKey | None = None
) -> Artifact:
    """Read, check and load an artifact folder; any problem raises ``ArtifactError``.

    With ``verify_key``, the manifest's signature is checked first (``recsys.export.signing``):
    an unsigned or altered artifact is refused before any other file is read.

    Refused: a missing folder or file, an unknown format version, a checksum mismatch (unless
    ``verify_checksums`` is off), a model or item table that does not match the manifest.
    """
    path = Path(path)
    if verify_key is not None:
        if not (path / MANIFEST_FILE).is_file():
            read_manifest(path)  # raises with the usual message
        verify_signature(path, verify_key, MANIFEST_FILE)
    manifest = read_manifest(path)
    check_files(path, manifest, verify_checksums)
    module = _load_module(path / MODEL_FILE)
    item_ids, popularity = _load_items(path / ITEMS_FILE)
    num_items = len(item_ids) - 1
    for name, recorded, actual in (
        ("num_items", manifest["num_items"], num_items),
        ("num_items", manifest["num_items"], int(module.num_items)),
        ("max_len", manifest["max_len"], int(module.max_len)),
    ):
        if recorded != actual:
            raise ArtifactError(
                f"{path}: the manifest says {name} = {recorded}, the model or item table has "
                f"{actual}"
            )
    retrieval = None
    if has_index(manifest):
        retrieval = _load_retrieval(path, manifest, module)
    return Artifact(
        path=path,
        manifest=manifest,
        module=module,
        item_ids=item_ids,
        popularity=popularity,
        retrieval=retrieval,
    )


def checksummed_files(manifest: dict[str, Any]) -> tuple[str, ...]:
    """The files an artifact with this manifest must hold, each with its SHA-256 recorded."""
    return (*CHECKSUMMED_FILES, INDEX_FILE) if has_index(manifest) else CHECKSUMMED_FILES


def has_index(manifest: dict[str, Any]) -> bool:
    """Whether the manifest describes an approximate retrieval index (artifacts without a
    ``retrieval`` entry predate indexes: exact)."""
    retrieval = manifest.get("retrieval")
    return isinstance(retrieval, dict) and retrieval.get("kind", "exact") != "exact"


def _load_retrieval(
    path: Path, manifest: dict[str, Any], module: torch.jit.ScriptModule
) -> ApproximateRetrieval:
    entry = manifest["retrieval"]
    breadth = entry.get("breadth")
    if not isinstance(breadth, int) or breadth < 1:
        raise ArtifactError(f"{path / MANIFEST_FILE}: retrieval records no search breadth")
    if not hasattr(module, "item_vectors") or not hasattr(module, "user_vectors"):
        raise ArtifactError(f"{path / MODEL_FILE} has no item_vectors/user_vectors for its index")
    with torch.no_grad():
        item_vectors = module.item_vectors().numpy()
    return ApproximateRetrieval(read_index(path / INDEX_FILE, breadth), item_vectors)


@contextmanager
def quiet_jit() -> Iterator[None]:
    """Silence TorchScript's deprecation notices: the product asks for TorchScript as the served
    format (see the style guide), so they would only be noise in every export and server start."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=Warning)
        yield


def _load_module(path: Path) -> torch.jit.ScriptModule:
    try:
        with quiet_jit():
            module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    except (RuntimeError, ValueError, OSError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ArtifactError(f"{path} is not a loadable TorchScript module: {first_line}") from err
    for attribute in ("max_len", "num_items", "explain", "scores"):
        if not hasattr(module, attribute):
            raise ArtifactError(f"{path} is not a recommender module: it has no {attribute!r}")
    return module.eval()


def _load_items(path: Path) -> tuple[list[str], np.ndarray]:
    """item_ids (with "" at 0) and popularity (with 0 at 0) from ``items.parquet``."""
    try:
        table = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise ArtifactError(f"{path} is not a readable Parquet file: {err}") from err
    missing = [c for c in (ITEM_IDX_COL, ITEM_ID_COL, POPULARITY_COL) if c not in table.columns]
    if missing:
        raise ArtifactError(f"{path} lacks the columns {', '.join(missing)}")
    table = table.sort(ITEM_IDX_COL)
    indices = table.get_column(ITEM_IDX_COL).to_numpy()
    if not np.array_equal(indices, np.arange(1, table.height + 1)):
        raise ArtifactError(f"{path}: {ITEM_IDX_COL} is not the contiguous range 1..n")
    ids = table.get_column(ITEM_ID_COL).cast(pl.String)
    if ids.null_count() or ids.n_unique() != table.height:
        raise ArtifactError(f"{path}: {ITEM_ID_COL} has missing or duplicate ids")
    popularity = np.zeros(table.height + 1, dtype=np.float64)
    popularity[1:] = table.get_column(POPULARITY_COL).cast(pl.Float64).fill_null(0.0).to_numpy()
    return ["", *ids.to_list()], popularity
