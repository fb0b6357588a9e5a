"""Shared fixtures: fixed seeds, the shared benchmark data folder, small inline logs, and tiny
synthetic datasets with models trained on them (for the evaluate, export and serving tests)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def _fixed_global_state() -> Iterator[None]:
    """Every test starts from the same seeds and leaves torch's global state as it found it."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def video_games_path() -> Path:
    """The SASRec authors' Video Games log; skips the test where ../shared/datasets is absent."""
    path = SHARED_DATASETS / "video_games.txt"
    if not path.is_file():
        pytest.skip(f"benchmark data not found at {path} (../shared/datasets is absent)")
    return path


@pytest.fixture
def small_log() -> pl.DataFrame:
    """Three users with timestamps; user 'c' has a time tie broken by input order."""
    return pl.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b", "b", "b", "c", "c", "c"],
            "item_id": ["x", "y", "z", "x", "y", "z", "w", "x", "w", "y"],
            "timestamp": [10, 20, 30, 40, 15, 25, 35, 50, 50, 60],
        }
    )


class TinyRuns:
    """Builds a small synthetic prepared dataset and trains a tiny SASRec on it in seconds."""

    TRAINING = {"hidden_size": 16, "batch_size": 64, "accelerator": "cpu", "devices": 1}
    """Settings every tiny model shares; each caller adds its own shape and epochs."""

    @staticmethod
    def prepared(
        folder: Path,
        n_users: int,
        n_items: int,
        n_events: int,
        seed: int,
        string_ids: bool = False,
    ) -> Path:
        """A synthetic log (items ``sku-<n>`` with ``string_ids``), users with >= 3 events."""
        from recsys.data import CleaningConfig, PrepareConfig, prepare_dataset, write_prepared
        from recsys.data.synthetic import SynthConfig, generate_log

        log = generate_log(
            SynthConfig(n_users=n_users, n_items=n_items, n_events=n_events, seed=seed)
        )
        if string_ids:
            log = log.with_columns(("sku-" + log["item_id"].cast(str)).alias("item_id"))
        config = PrepareConfig(cleaning=CleaningConfig(min_user_interactions=3))
        return write_prepared(prepare_dataset(log, config), folder)

    @classmethod
    def trained(cls, data: Path, run: Path, **config: Any) -> Path:
        """Train on ``data`` into ``run`` with ``TRAINING`` + ``config``; the best checkpoint."""
        from recsys.training import TrainConfig, train

        train(data, run, TrainConfig.build({**cls.TRAINING, **config}), progress=False)
        return run / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="session")
def tiny_runs() -> type[TinyRuns]:
    """``TinyRuns``: tiny synthetic datasets and models for tests that need a real checkpoint."""
    return TinyRuns
