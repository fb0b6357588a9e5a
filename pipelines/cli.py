"""The ``recsys`` command: one entry point for every batch job, the server and its client.

Errors the user can cause (``RecsysError``, and ``OSError``: a read-only folder, a full disk)
print ``error: <message>`` to stderr and exit with status 2; they never show a traceback.

Each command's module is imported only when that command runs (or shows its own help): the
training and evaluation commands pull in torch, Lightning and matplotlib (seconds of imports),
which ``recsys recommend`` and ``recsys health``, gRPC clients run from scripts and
health checks, must not wait for. ``recsys --help`` lists the commands from the summaries below.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command

from recsys.errors import RecsysError

EXIT_USER_ERROR = 2

PREPARE_ENVIRONMENT: Mapping[str, str] = {"_RJEM_MALLOC_CONF": "dirty_decay_ms:0,muzzy_decay_ms:0"}
"""polars' allocator (jemalloc) keeps freed pages for 0.5-1 s before giving them back (polars'
own setting, to which it appends this variable: pola-rs/polars#18088), and preparation frees the
raw log column by column while numpy, another allocator, builds the coded one within that time:
RSS would hold both. Returning pages at once costs ~15% of the time and cuts the peak ~25%
(``bench/prepare_large.py``). It takes effect only before polars is imported, which the lazy
command loading below guarantees for ``recsys prepare``; a value the user set wins."""


@dataclass(frozen=True)
class CommandEntry:
    """Where a command lives, and the first paragraph of its docstring for the listing (a test
    keeps the two equal)."""

    module: str
    function: str
    summary: str
    environment: Mapping[str, str] = field(default_factory=dict)
    """Variables set (unless the user set them) before the command's module is imported."""

    def load(self) -> Callable[..., Any]:
        for name, value in self.environment.items():
            os.environ.setdefault(name, value)
        function: Callable[..., Any] = getattr(importlib.import_module(self.module), self.function)
        return function


COMMANDS: dict[str, CommandEntry] = {
    "synth": CommandEntry(
        "pipelines.jobs.synth",
        "synth",
        "Generate a log with power-law popularity and learnable sequential structure.",
    ),
    "prepare": CommandEntry(
        "pipelines.jobs.prepare",
        "prepare",
        "Read, clean, index and split an interaction log into a prepared dataset folder.",
        PREPARE_ENVIRONMENT,
    ),
    "train": CommandEntry(
        "pipelines.jobs.train",
        "train_command",
        "Train SASRec on a prepared dataset (GPU when present, CPU otherwise).",
    ),
    "evaluate": CommandEntry(
        "pipelines.jobs.evaluate",
        "evaluate",
        "Rank each user's held-out item with a model and/or baselines; write metrics with "
        "bootstrap intervals, paired differences against the first scorer, a Markdown report "
        "and plots.",
    ),
    "export": CommandEntry(
        "pipelines.jobs.export",
        "export",
        "Export a trained SASRec as a TorchScript artifact, checked against the eager model "
        "(scores within 1e-5, identical top-k) before it appears at --out; or --verify an "
        "artifact.",
    ),
    "demo": CommandEntry(
        "pipelines.jobs.demo",
        "demo",
        "Synthesize a log, prepare it, train SASRec, evaluate it, export it, serve it (gRPC + "
        "embedded Redis) and send it a few requests.",
    ),
    "load-features": CommandEntry(
        "pipelines.jobs.load_features",
        "load_features",
        "Load every user's latest history from a prepared dataset into the Redis feature store.",
    ),
    "serve": CommandEntry(
        "pipelines.service.serve",
        "serve_command",
        "Serve recommendations over gRPC (health + reflection included) until SIGTERM/SIGINT.",
    ),
    "recommend": CommandEntry(
        "pipelines.service.recommend",
        "recommend_command",
        "Ask a running `recsys serve` for recommendations; errors print the gRPC status name.",
    ),
    "health": CommandEntry(
        "pipelines.service.health",
        "health_command",
        "Check a running `recsys serve` through the gRPC health service: prints its status; "
        "exit status 0 when SERVING, 1 otherwise (the HEALTHCHECK convention).",
    ),
}


class LazyCommands(TyperGroup):
    """The command group, building a command from its module only when it is asked for.

    While the group's own help is drawn, commands are stand-ins that carry only their summary,
    so listing them imports nothing.
    """

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        if self._listing:
            return TyperCommand(name=cmd_name, help=entry.summary)
        if cmd_name not in self.commands:
            single = typer.Typer(add_completion=False)
            single.command(cmd_name)(entry.load())
            self.commands[cmd_name] = get_command(single)
        return self.commands[cmd_name]

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0]
        if name not in COMMANDS and not name.startswith("-"):
            matches = get_close_matches(name, list(COMMANDS))
            hint = f" Did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="recsys",
    cls=LazyCommands,
    help="Attention-based sequential recommender: prepare data, train, evaluate, export, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _group() -> None:
    """Makes ``app`` a command group (its commands come from ``COMMANDS``)."""


def main() -> None:
    """Console-script entry: run the app and turn domain errors into a clean exit."""
    try:
        app(prog_name="recsys")
    except RecsysError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except OSError as err:  # the environment refused: permissions, a full disk, a missing path
        where = f": {err.filename}" if err.filename else ""
        print(f"error: {err.strerror or err}{where}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


if __name__ == "__main__":
    main()
