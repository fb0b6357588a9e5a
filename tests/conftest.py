"""Shared fixtures: fixed seeds, the shared benchmark data folder, small inline logs."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

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
