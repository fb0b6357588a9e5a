"""Export: a trained model as a self-describing, verified artifact folder, and its loader.

``export_artifact`` writes ``model.ts`` (TorchScript: top-k with exclusions, explanations, raw
scores), ``items.parquet`` (index <-> external id, popularity) and ``manifest.json`` (format and
model version, hyper-parameters, data fingerprint, metrics, checksums), checked against the eager
model before it becomes visible. ``load_artifact`` is what serving uses: it needs no training
code, and refuses a missing file, a checksum mismatch or an unknown format version.
``right_aligned_rows`` is the input layout of the exported module (newest item last, 0-padded on
the left), re-exported here for the server, which reads only this package of the library.
``artifact_scorer`` evaluates an artifact offline exactly as it will serve. ``retrieval``: the
optional approximate top-k index (faiss) built at export for large catalogues; ``signing``: the
Ed25519 signature over the manifest that a server with a verify key requires.
"""

from recsys.data import right_aligned_rows
from recsys.errors import ArtifactError
from recsys.export.artifact import (
    ARTIFACT_FORMAT,
    ITEMS_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    Artifact,
    load_artifact,
    read_manifest,
)
from recsys.export.exporter import (
    EXPORT_FORMATS,
    ExportFormat,
    export_artifact,
    verify_artifact,
    verify_loaded_artifact,
)
from recsys.export.module import RecommenderModule
from recsys.export.retrieval import INDEX_FILE, INDEX_KINDS, ApproximateRetrieval, IndexKind
from recsys.export.scorer import ArtifactScorer, artifact_scorer

__all__ = [
    "ARTIFACT_FORMAT",
    "EXPORT_FORMATS",
    "INDEX_FILE",
    "INDEX_KINDS",
    "ITEMS_FILE",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "Artifact",
    "ArtifactScorer",
    "ArtifactError",
    "ApproximateRetrieval",
    "IndexKind",
    "ExportFormat",
    "RecommenderModule",
    "artifact_scorer",
    "export_artifact",
    "load_artifact",
    "read_manifest",
    "right_aligned_rows",
    "verify_artifact",
    "verify_loaded_artifact",
]
