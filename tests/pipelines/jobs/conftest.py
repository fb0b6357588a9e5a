"""Fixtures of the batch-job command tests: a log written by ``recsys synth``, and a tiny model
trained on a synthetic dataset (for ``recsys evaluate`` and ``recsys export``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.conftest import TinyRuns
    from tests.pipelines.conftest import RunRecsys

SYNTH_EVENTS = 600
TINY = {"n_heads": 1, "n_blocks": 1, "max_len": 10, "max_epochs": 2}


@pytest.fixture(scope="session")
def synth_log(run_recsys: RunRecsys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``recsys synth --users 50 --items 20 --events 600`` as a CSV log (for synth and prepare)."""
    log = tmp_path_factory.mktemp("synth") / "log.csv"
    result = run_recsys(
        "synth", "--users", "50", "--items", "20", "--events", str(SYNTH_EVENTS), "--out", str(log)
    )
    assert result.returncode == 0, result.stderr
    return log


@pytest.fixture(scope="session")
def trained(
    tiny_runs: type[TinyRuns], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A prepared synthetic dataset (150 items) and the best checkpoint of a 2-epoch tiny model."""
    root = tmp_path_factory.mktemp("trained")
    data = tiny_runs.prepared(root / "data", n_users=200, n_items=150, n_events=4_000, seed=2)
    return data, tiny_runs.trained(data, root / "run", **TINY)
