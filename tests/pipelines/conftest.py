"""Helpers for command-line tests: run the real ``recsys`` entry point as a user would, in a
process of its own or in this one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from pipelines import cli

RunRecsys = Callable[..., subprocess.CompletedProcess[str]]
UserErrorCheck = Callable[[subprocess.CompletedProcess[str], str], None]


class Printed(NamedTuple):
    out: str
    err: str


MainExit = Callable[..., Printed]
MainRefusal = Callable[..., str]


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


@pytest.fixture(scope="session")
def run_recsys() -> RunRecsys:
    """``run_recsys("prepare", "--input", ...)`` -> the finished subprocess."""
    return _run_recsys


@pytest.fixture
def assert_user_error() -> UserErrorCheck:
    return _assert_user_error


@pytest.fixture
def main_exit(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> MainExit:
    """``main_exit(*args, code=2)``: run ``recsys ARGS`` in this process, expect it to exit with
    status ``code``; what it printed (``.out``, ``.err``)."""

    def run(*args: str, code: int = 2) -> Printed:
        monkeypatch.setattr(sys, "argv", ["recsys", *args])
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        assert exit_info.value.code == code
        captured = capsys.readouterr()
        return Printed(captured.out, captured.err)

    return run


@pytest.fixture
def refused_in_empty_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, main_exit: MainExit
) -> MainRefusal:
    """``refused_in_empty_dir(*args)``: run ``recsys ARGS`` in this process from the empty folder
    ``tmp_path``, expect exit status 2 and nothing written there (no staging folder either);
    what it printed on stderr."""

    def run(*args: str) -> str:
        monkeypatch.chdir(tmp_path)
        stderr = main_exit(*args).err
        assert [p.name for p in tmp_path.iterdir()] == [], "a refused command wrote something"
        return stderr

    return run
