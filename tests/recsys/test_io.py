"""Atomic writes: a folder or a file appears whole or not at all; checksums read in chunks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from recsys.errors import OutputExistsError
from recsys.io import atomic_directory, atomic_write_text, sha256_file, write_json


def test_a_failed_write_leaves_nothing_and_keeps_the_old_folder(tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target, overwrite=True) as staging:
        (staging / "half.parquet").write_text("partial")
        raise RuntimeError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_an_existing_folder_is_refused_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.mkdir()
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        with atomic_directory(target):
            pass  # pragma: no cover - never entered
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_overwrite_swaps_in_the_complete_folder_and_retires_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_directory(target, overwrite=True) as staging:
        (staging / "new.txt").write_text("new")
        assert [p.name for p in target.iterdir()] == ["old.txt"]  # untouched until complete
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no staging or retired copy


def test_atomic_write_text_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "notes.md"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["notes.md"]


def test_write_json_is_key_sorted_indented_and_ends_with_a_newline(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    write_json(path, {"b": 1, "a": tmp_path})
    text = path.read_text()
    assert text == json.dumps({"a": str(tmp_path), "b": 1}, indent=2) + "\n"


def test_sha256_file_reads_past_its_chunk_size(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    content = bytes(range(256)) * ((1 << 20) // 256 + 3)  # a little over one chunk
    path.write_bytes(content)
    assert sha256_file(path) == hashlib.sha256(content).hexdigest()
