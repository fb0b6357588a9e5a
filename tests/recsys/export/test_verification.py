"""Verification of an exported artifact: the smoke answer recorded at export time is re-checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsys.errors import ArtifactError
from recsys.export import verify_artifact


def test_a_module_that_now_answers_differently_is_refused(artifact_copy: Path) -> None:
    manifest = json.loads((artifact_copy / "manifest.json").read_text())
    manifest["smoke"]["scores"][0][0] += 1.0  # as if the module now answered differently
    (artifact_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="smoke inference disagrees"):
        verify_artifact(artifact_copy)
