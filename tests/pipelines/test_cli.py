"""The ``recsys`` command: every subcommand documents itself, and user errors exit cleanly."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from pipelines.cli import COMMANDS, PREPARE_ENVIRONMENT

if TYPE_CHECKING:
    from tests.pipelines.conftest import RunRecsys

SUBCOMMANDS = [
    "synth",
    "prepare",
    "train",
    "evaluate",
    "export",
    "demo",
    "load-features",
    "serve",
    "recommend",
    "health",
]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command: str, run_recsys: RunRecsys) -> None:
    result = run_recsys(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"recsys {command}" in result.stdout
    assert "--" in result.stdout


def test_top_level_help_lists_the_subcommands(run_recsys: RunRecsys) -> None:
    result = run_recsys("--help")
    assert result.returncode == 0
    for command in SUBCOMMANDS:
        assert command in result.stdout


def test_the_registry_holds_every_subcommand_with_its_docstring_summary() -> None:
    assert list(COMMANDS) == SUBCOMMANDS
    for name, entry in COMMANDS.items():
        doc = inspect.getdoc(entry.load()) or ""
        first_paragraph = " ".join(doc.split("\n\n")[0].split())
        assert entry.summary == first_paragraph, f"{name}: listing and docstring differ"


HEAVY_MODULES = ("torch", "pytorch_lightning", "matplotlib", "polars")


@pytest.mark.parametrize(
    ("args", "needed"),
    [
        (["--help"], []),
        (["recommend", "--help"], []),
        (["health", "--help"], []),
        (["serve", "--help"], ["polars", "torch"]),  # the server loads the model
    ],
)
def test_the_client_commands_and_the_listing_import_no_training_stack(
    args: list[str], needed: list[str]
) -> None:
    # In a fresh interpreter: what `recsys ARGS` has imported by the time it exits.
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from pipelines.cli import app\n"
        f"result = CliRunner().invoke(app, {args!r})\n"
        "assert result.exit_code == 0, result.output\n"
        f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.strip().splitlines()[-1]
    assert loaded == repr(needed), f"recsys {' '.join(args)} imported {loaded}"


def test_a_mistyped_command_names_the_closest_one(run_recsys: RunRecsys) -> None:
    result = run_recsys("recomend", "--user", "u1")
    assert result.returncode == 2
    assert "No such command 'recomend'. Did you mean 'recommend'?" in result.stderr


_RSS_PROBE = """
import os
from pipelines.cli import COMMANDS, PREPARE_ENVIRONMENT
COMMANDS["prepare"].load()
import polars as pl
def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20
before = rss()
column = pl.int_range(0, 25_000_000, eager=True).cast(pl.Int64)  # 200 MB
grown = rss() - before
del column
print(os.environ["_RJEM_MALLOC_CONF"], grown, rss() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_prepare_gives_freed_polars_memory_back_at_once() -> None:
    # Preparation drops the raw log column by column while numpy builds the coded one: polars'
    # allocator must hand the pages back instead of keeping them for ~10 s, or RSS holds both.
    environment = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    setting, grown, left = _python(_RSS_PROBE, environment).split()
    # polars puts its own defaults first and the variable after them: the later keys win.
    assert setting.endswith("," + PREPARE_ENVIRONMENT["_RJEM_MALLOC_CONF"])
    assert int(grown) >= 150, "the probe did not allocate what it meant to"
    assert int(left) < 50, f"{left} MiB of a freed 200 MB column still resident"


def test_a_users_own_allocator_setting_wins() -> None:
    probe = (
        "import os\nfrom pipelines.cli import COMMANDS\nCOMMANDS['prepare'].load()\n"
        "import polars\nprint(os.environ['_RJEM_MALLOC_CONF'])\n"
    )
    printed = _python(probe, {**os.environ, "_RJEM_MALLOC_CONF": "dirty_decay_ms:5000"})
    assert printed.strip().endswith(",dirty_decay_ms:5000")
    assert PREPARE_ENVIRONMENT["_RJEM_MALLOC_CONF"] not in printed


def _python(code: str, environment: dict[str, str]) -> str:
    """What ``code`` prints in a fresh interpreter with ``environment``."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environment,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
