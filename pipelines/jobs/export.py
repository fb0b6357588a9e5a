"""``recsys export``: a training checkpoint -> a verified TorchScript artifact folder; or, with
``--verify``, re-check an existing artifact's checksums and a smoke inference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import Field
from rich.table import Table

from pipelines.console import console
from pipelines.options import OVERWRITE, Option, config_command
from recsys.config import Config
from recsys.errors import ConfigError
from recsys.export import (
    MANIFEST_FILE,
    ExportFormat,
    IndexKind,
    export_artifact,
    verify_artifact,
)


class ExportSettings(Config):
    """How ``recsys export`` writes the model (its inputs and outputs are paths, given as flags)."""

    format: ExportFormat = "torchscript"
    """Model file format."""
    index: IndexKind = "auto"
    """Approximate top-k index built into the artifact: exact (none: score every item), ivf,
    hnsw (faiss); auto: ivf from 200,000 items on, else exact."""
    sign_key: str | None = None
    """An Ed25519 private key (PEM) to sign the manifest with (manifest.sig); a server with
    --verify-key then refuses any artifact it did not sign."""
    verify_key: str | None = None
    """With --verify: also check the signature against this Ed25519 public key (PEM)."""
    min_recall: float = Field(0.95, gt=0.0, le=1.0)
    """With an index: the recall@10 against exact scoring it must reach on held-out histories
    (its search is widened until it does; the export fails if it cannot)."""


_PATHS = [
    Option(
        "checkpoint",
        Annotated[
            Path | None, typer.Option(help="Training checkpoint (RUN_DIR/checkpoints/best.ckpt).")
        ],
        None,
    ),
    Option(
        "data",
        Annotated[
            Path | None, typer.Option(help="The prepared dataset the checkpoint was trained on.")
        ],
        None,
    ),
    Option(
        "out",
        Annotated[
            Path | None,
            typer.Option(help="Artifact folder to write: model.ts, items.parquet, manifest.json."),
        ],
        None,
    ),
    Option(
        "metrics",
        Annotated[
            Path | None,
            typer.Option(
                help="An evaluation report of this checkpoint (recsys evaluate's metrics.json) "
                "whose metrics go into the manifest."
            ),
        ],
        None,
    ),
    Option(
        "verify",
        Annotated[
            Path | None,
            typer.Option(
                help="Instead of exporting: re-check this artifact folder's checksums and run a "
                "smoke inference.",
                metavar="ARTIFACT_DIR",
            ),
        ],
        None,
    ),
    OVERWRITE,
]


def run_export(
    settings: ExportSettings,
    checkpoint: Path | None,
    data: Path | None,
    out: Path | None,
    metrics: Path | None,
    verify: Path | None,
    overwrite: bool,
) -> None:
    """Export (every path given), or ``--verify`` an artifact (no export path given)."""
    if verify is not None:
        given = [flag for flag, value in _export_flags(checkpoint, data, out, metrics) if value]
        if given or overwrite:
            raise ConfigError(
                f"--verify checks an existing artifact: drop {', '.join(given or ['--overwrite'])}"
            )
        summary = run_verify(verify, Path(settings.verify_key) if settings.verify_key else None)
        console.print(
            f"artifact {verify} is sound: "
            + ("signature valid, " if summary["signature"] == "ok" else "")
            + "checksums match, smoke inference on "
            f"{summary['smoke']['sequences']} histories agrees with the export "
            f"(max score difference {summary['smoke']['max_abs_score_diff']:.2g})"
        )
        return
    missing = [
        flag for flag, value in _export_flags(checkpoint, data, out, metrics)[:3] if not value
    ]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} required to export (or give --verify ARTIFACT_DIR to check one)"
        )
    assert checkpoint is not None and data is not None and out is not None  # checked above
    with console.status(f"exporting {checkpoint} to {out}"):
        export_artifact(
            checkpoint,
            data,
            out,
            overwrite,
            metrics,
            settings.format,
            settings.index,
            settings.min_recall,
            Path(settings.sign_key) if settings.sign_key else None,
        )
    manifest = json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))
    console.print(artifact_table(manifest, out))
    console.print(f"artifact written to {out}")


export = config_command(
    ExportSettings,
    run_export,
    _PATHS,
    doc="""Export a trained SASRec as a TorchScript artifact, checked against the eager model
    (scores within 1e-5, identical top-k) before it appears at --out; or --verify an artifact.""",
)


def run_verify(path: Path, verify_key: Path | None = None) -> dict[str, Any]:
    """``verify_artifact`` with progress on the console."""
    with console.status(f"verifying {path}"):
        return verify_artifact(path, verify_key)


def artifact_table(manifest: dict[str, Any], out: Path) -> Table:
    """What people check first in a new artifact."""
    table = Table(title=f"artifact {out}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("model version", str(manifest["model_version"]))
    table.add_row("catalogue", f"{manifest['num_items']:,} items, max_len {manifest['max_len']}")
    verification = manifest["verification"]
    table.add_row(
        "scripted vs eager",
        f"{verification['sequences']} real histories: max score difference "
        f"{verification['max_abs_score_diff']:.2g}, top-{verification['k']} identical",
    )
    retrieval = manifest.get("retrieval", {"kind": "exact"})
    if retrieval.get("kind", "exact") == "exact":
        table.add_row("retrieval", "exact: every item scored")
    else:
        table.add_row(
            "retrieval",
            f"{retrieval['kind']} index ({retrieval.get('library')}): recall@10 "
            f"{retrieval['recall_at_10']:.3f} searching {retrieval['breadth']} wide",
        )
    for split, block in manifest.get("metrics", {}).items():
        values = block.get("metrics", {})
        shown = ", ".join(
            f"{name} {values[name]:.4f}" for name in ("hr@10", "ndcg@10") if name in values
        )
        table.add_row(f"{split} metrics", f"{shown} ({block.get('protocol')})")
    for name, entry in manifest["files"].items():
        table.add_row(name, f"{entry['bytes']:,} bytes, sha256 {entry['sha256'][:12]}...")
    return table


def _export_flags(
    checkpoint: Path | None, data: Path | None, out: Path | None, metrics: Path | None
) -> list[tuple[str, Path | None]]:
    return [("--checkpoint", checkpoint), ("--data", data), ("--out", out), ("--metrics", metrics)]
