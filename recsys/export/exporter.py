"""Export a training checkpoint as an artifact folder, and verify an existing artifact.

``export_artifact`` scripts the model, saves it, reloads the saved file and checks it against the
eager model on real histories before anything becomes visible at ``out`` (the folder is built
under a temporary name and renamed into place only after every check passed). The training
code (Lightning) is imported only inside these functions, so ``import recsys.export`` stays light
for the server, which only loads artifacts.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, get_args

import numpy as np
import polars as pl
import torch

from recsys.data import (
    FlatSequences,
    PreparedDataset,
    held_out_targets,
    load_prepared,
    right_aligned,
    training_sequences,
)
from recsys.data import columns as C
from recsys.errors import ArtifactError, ConfigError, OutputExistsError
from recsys.export.artifact import (
    ARTIFACT_FORMAT,
    CHECKSUMMED_FILES,
    ITEM_ID_COL,
    ITEM_IDX_COL,
    ITEMS_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    POPULARITY_COL,
    Artifact,
    checksummed_files,
    load_artifact,
    quiet_jit,
)
from recsys.export.metadata import MODEL_TYPE, model_version, report_metrics, training_metrics
from recsys.export.module import RecommenderModule
from recsys.export.retrieval import (
    AUTO_INDEX_ITEMS,
    INDEX_FILE,
    build_index,
    resolve_kind,
    tune_breadth,
    write_index,
)
from recsys.export.signing import load_private_key, load_public_key, sign_manifest
from recsys.export.verification import (
    SMOKE_ROWS,
    check_external_ids,
    check_invariants,
    check_smoke_sample,
    compare_with_eager,
    external_ids,
    smoke_sample,
)
from recsys.io import atomic_directory, sha256_file, write_json
from recsys.models import SASRec

ExportFormat = Literal["torchscript"]
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)
VERIFY_K: Final = 10
_VERIFY_CELLS: Final = 1 << 24
"""Scores computed per verification pass (~64 MB of float32): 256 histories of a 24k-item
catalogue, 16 of a 1M-item one."""

INTERFACE: Final = {
    "forward": "(items int64[B,L] right-aligned 0-padded newest last, k: int, exclude int64[B,E] "
    "0-padded, exclude_history: bool, allow: Optional[int64[B,A]] = None) -> (indices int64[B,k], "
    "scores float32[B,k]) best first; index 0 and -inf fill slots with no eligible item",
    "explain": "(items int64[B,L]) -> (per_head float32[B,heads,L'], mean float32[B,L']), "
    "L' = min(L, max_len): the last block's attention of the newest position",
    "scores": "(items int64[B,L]) -> float32[B,V+1], column 0 = -inf",
    "user_vectors": "(items int64[B,L]) -> float32[B,H]: a score is its inner product with an "
    "item's vector",
    "item_vectors": "() -> float32[V,H], row r = item r + 1",
}
RECALL_USERS: Final = 1000
"""Held-out histories the index's recall is measured on at export."""


def export_artifact(
    checkpoint: Path,
    data: Path,
    out: Path,
    overwrite: bool = False,
    metrics: Path | None = None,
    export_format: str = "torchscript",
    index: str = "auto",
    min_recall: float = 0.95,
    sign_key: Path | None = None,
) -> Path:
    """Checkpoint + its prepared dataset -> a verified artifact folder at ``out``; returns ``out``.

    ``metrics``: an evaluation report (``metrics.json``) of this checkpoint whose numbers go into
    the manifest. ``index``: the approximate retrieval index to build
    (``recsys.export.retrieval``), whose recall@10 against exact scoring must reach
    ``min_recall``. ``sign_key``: an Ed25519 private key (PEM) to sign the manifest with
    (``recsys.export.signing``). Raises ``ArtifactError`` if the scripted module disagrees with
    the eager model or the index falls short, ``OutputExistsError`` if ``out`` exists without
    ``overwrite``; errors name the flag.
    """
    # Lightning comes with the checkpoint reader: imported only when exporting, so that the
    # server (which imports this package for the loader) never loads training code.
    from recsys.training.checkpoint import load_checkpoint

    checkpoint, data, out = Path(checkpoint), Path(data), Path(out)
    if export_format not in EXPORT_FORMATS:
        raise ConfigError(
            f"--format {export_format!r}: expected one of {', '.join(EXPORT_FORMATS)}"
        )
    if not 0.0 < min_recall <= 1.0:
        raise ConfigError(f"--min-recall must be in (0, 1], got {min_recall}")
    _check_out(out, overwrite, {"--data": data, "--checkpoint": checkpoint})
    private_key = load_private_key(sign_key) if sign_key is not None else None
    dataset = load_prepared(data)
    index_kind = resolve_kind(index, dataset.num_items)
    module = load_checkpoint(checkpoint, dataset)
    model: SASRec = module.model.eval()
    fingerprint = str(module.hparams.get("dataset_fingerprint") or dataset.fingerprint)
    known_metrics = training_metrics(checkpoint)
    if metrics is not None:
        known_metrics |= report_metrics(metrics, checkpoint, fingerprint)
    sequences = history_sequences(dataset)  # read once: verification and the index's recall
    histories = spread_histories(sequences, dataset.num_items, model.max_len)
    k = min(VERIFY_K, dataset.num_items)
    with atomic_directory(out, overwrite=overwrite) as staging, quiet_jit():
        try:
            scripted = torch.jit.script(RecommenderModule(model))
            torch.jit.save(scripted, str(staging / MODEL_FILE))
        except (RuntimeError, torch.jit.Error) as err:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
            raise ArtifactError(
                f"could not script the model of {checkpoint}: {first_line}"
            ) from err
        write_items(dataset, staging / ITEMS_FILE)
        # Check the file as the server will load it, not the in-memory module.
        reloaded = torch.jit.load(  # type: ignore[no-untyped-call]
            str(staging / MODEL_FILE), map_location="cpu"
        ).eval()
        agreement = compare_with_eager(reloaded, model, histories, k)
        check_invariants(reloaded, dataset.num_items, model.max_len)
        picks = np.unique(np.linspace(0, len(histories) - 1, SMOKE_ROWS).astype(np.int64))
        smoke = smoke_sample(reloaded, histories[torch.from_numpy(picks)], k)
        smoke |= external_ids(smoke, dataset.items)
        retrieval = _retrieval(
            reloaded, dataset, sequences, model.max_len, index, index_kind, min_recall
        )
        if index_kind != "exact":
            write_index(retrieval.pop("index"), staging / INDEX_FILE)
        names = (*CHECKSUMMED_FILES, INDEX_FILE) if index_kind != "exact" else CHECKSUMMED_FILES
        checksums = {name: sha256_file(staging / name) for name in names}
        files = {
            name: {"sha256": checksum, "bytes": (staging / name).stat().st_size}
            for name, checksum in checksums.items()
        }
        created_at = datetime.now(UTC).replace(microsecond=0)
        manifest = {
            "format_version": ARTIFACT_FORMAT,
            "export_format": export_format,
            "model_type": MODEL_TYPE,
            "model_version": model_version(created_at, checksums[MODEL_FILE]),
            "created_at": created_at.isoformat(),
            "torch_version": torch.__version__,
            "max_len": model.max_len,
            "num_items": dataset.num_items,
            "n_heads": model.config.n_heads,
            "item_id_dtype": str(dataset.items.id_dtype),
            "hyperparameters": {
                "model": model.get_config(),
                "train": dict(module.hparams.get("train") or {}),
            },
            "dataset": {
                "fingerprint": fingerprint,
                "path": str(data),
                "num_users": dataset.num_users,
                "num_items": dataset.num_items,
                "num_interactions": dataset.stats.get("num_interactions"),
                "split": dataset.stats.get("split"),
            },
            "metrics": known_metrics,
            "source": {"checkpoint": str(checkpoint), "sha256": sha256_file(checkpoint)},
            "interface": INTERFACE,
            "verification": agreement.as_dict(),
            "smoke": smoke,
            "retrieval": retrieval,
            "files": files,
        }
        write_json(staging / MANIFEST_FILE, manifest)
        if private_key is not None:
            sign_manifest(staging, private_key, MANIFEST_FILE)
        # What the server will do: refuse here rather than there.
        verify_loaded_artifact(
            load_artifact(staging, verify_key=private_key.public_key() if private_key else None)
        )
    return out


def _retrieval(
    scripted: torch.jit.ScriptModule,
    dataset: PreparedDataset,
    sequences: FlatSequences,
    max_len: int,
    asked: str,
    kind: str,
    min_recall: float,
) -> dict[str, Any]:
    """The manifest's ``retrieval`` entry; with an index, also the built index (key ``index``)."""
    rule = f"--index {asked}" + (
        f" (an index from {AUTO_INDEX_ITEMS:,} items on; this catalogue has {dataset.num_items:,})"
        if asked == "auto"
        else ""
    )
    if kind == "exact":
        return {"kind": "exact", "rule": rule}
    import faiss

    item_vectors = scripted.item_vectors().numpy()  # [V, H]
    started = time.perf_counter()
    built = build_index(kind, item_vectors)
    build_s = time.perf_counter() - started
    histories = spread_histories(sequences, dataset.num_items, max_len, RECALL_USERS)
    with torch.no_grad():
        users = torch.cat(
            [scripted.user_vectors(histories[i : i + 256]) for i in range(0, len(histories), 256)]
        ).numpy()  # [B, H]
    tuned = tune_breadth(built, users, item_vectors, min_recall)
    return {
        "kind": kind,
        "rule": rule,
        "library": f"faiss {faiss.__version__}",
        "file": INDEX_FILE,
        "build_s": round(build_s, 2),
        **tuned,
        "index": built,
    }


def verify_artifact(path: Path, verify_key: Path | None = None) -> dict[str, Any]:
    """Re-check an artifact: its signature (with ``verify_key``, a PEM public key), its files'
    checksums, then a smoke inference against the answer recorded at export time, by index and
    by external id, and the invariants every answer must satisfy. Returns a summary."""
    started = time.perf_counter()
    key = load_public_key(verify_key) if verify_key is not None else None
    summary = verify_loaded_artifact(
        load_artifact(Path(path), verify_checksums=True, verify_key=key), started
    )
    summary["signature"] = "ok" if key is not None else "not checked"
    return summary


def verify_loaded_artifact(artifact: Artifact, started: float | None = None) -> dict[str, Any]:
    """``verify_artifact`` for an artifact already loaded with its checksums checked, so that a
    caller who keeps it (the server) loads and hashes the files once. ``started``: the
    ``perf_counter`` time the summary's ``seconds`` count from (default: now)."""
    started = time.perf_counter() if started is None else started
    path = artifact.path
    sample = artifact.manifest.get("smoke")
    if not isinstance(sample, dict):
        raise ArtifactError(f"{path / MANIFEST_FILE} records no smoke sample to re-check")
    smoke = check_smoke_sample(artifact.module, sample)
    check_external_ids(sample, artifact.item_ids)
    check_invariants(artifact.module, artifact.num_items, artifact.max_len)
    return {
        "path": str(path),
        "format_version": artifact.manifest["format_version"],
        "model_version": artifact.model_version,
        "num_items": artifact.num_items,
        "max_len": artifact.max_len,
        "checksums": {name: "ok" for name in checksummed_files(artifact.manifest)},
        "smoke": smoke,
        "seconds": round(time.perf_counter() - started, 3),
    }


def verification_histories(
    dataset: PreparedDataset, max_len: int, size: int | None = None
) -> torch.Tensor:
    """Real histories to compare scripted and eager on: [B, L] int64, right-aligned.

    The held-out test users' histories (else validation's, else training sequences), spread
    over the range of history lengths, up to twice ``max_len`` wide so that truncation to the
    model's window is exercised too. ``size``: how many (default: by catalogue size, 16 to 256).
    """
    return spread_histories(history_sequences(dataset), dataset.num_items, max_len, size)


def history_sequences(dataset: PreparedDataset) -> FlatSequences:
    """The held-out test users' histories, else validation's, else the training sequences."""
    for split in (C.TEST, C.VALIDATION):
        held_out = held_out_targets(dataset, split)
        if len(held_out.targets):
            return held_out.histories
    sequences = training_sequences(dataset)
    if len(sequences) == 0:
        raise ArtifactError("the dataset has no user history to verify the export on")
    return sequences


def spread_histories(
    sequences: FlatSequences, num_items: int, max_len: int, size: int | None = None
) -> torch.Tensor:
    """``verification_histories`` from sequences already read."""
    if size is None:
        size = max(16, min(256, _VERIFY_CELLS // (num_items + 1)))
    order = np.argsort(sequences.lengths, kind="stable")
    picks = order[np.unique(np.linspace(0, len(order) - 1, min(size, len(order))).astype(int))]
    rows = [sequences.row(int(i)) for i in picks]
    width = min(2 * max_len, max(len(row) for row in rows))
    return right_aligned(rows, width)


def write_items(dataset: PreparedDataset, path: Path) -> None:
    """``items.parquet``: item_idx 1..V, item_id as a string, popularity = training count."""
    table = dataset.items.table.sort(dataset.items.index_col)
    pl.DataFrame(
        {
            ITEM_IDX_COL: table.get_column(dataset.items.index_col).cast(pl.Int64),
            ITEM_ID_COL: table.get_column(dataset.items.id_col).cast(pl.String),
            POPULARITY_COL: table.get_column("train_count").cast(pl.Float64),
        }
    ).write_parquet(path, compression="zstd", statistics=True)


def _check_out(out: Path, overwrite: bool, inputs: dict[str, Path]) -> None:
    """``--out`` must be new (or ``--overwrite``), and never an input or a folder holding one."""
    if out.exists() and not overwrite:
        raise OutputExistsError(f"--out {out} already exists (pass --overwrite to replace it)")
    target = out.resolve()
    for flag, path in inputs.items():
        source = path.resolve()
        if source == target or target in source.parents:
            raise ConfigError(f"--out {out} would replace {flag} {path}: choose another folder")
