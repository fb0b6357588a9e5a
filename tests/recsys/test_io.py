"""Atomic writes: a folder appears whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.io import atomic_directory


def test_a_failed_write_leaves_nothing_and_keeps_the_old_folder(tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target, overwrite=True) as staging:
        (staging / "half.parquet").write_text("partial")
        raise RuntimeError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
