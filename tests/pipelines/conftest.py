"""Helpers for command-line tests: run the real ``recsys`` entry point as a user would."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

RunRecsys = Callable[..., subprocess.CompletedProcess[str]]
UserErrorCheck = Callable[[subprocess.CompletedProcess[str], str], None]


def _run_recsys(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _assert_user_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit status 2, the message on stderr, and no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def run_recsys() -> RunRecsys:
    """``run_recsys("prepare", "--input", ...)`` -> the finished subprocess."""
    return _run_recsys


@pytest.fixture
def assert_user_error() -> UserErrorCheck:
    return _assert_user_error
