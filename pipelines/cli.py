"""The ``recsys`` command: one entry point for every batch job and (later) the server.

Errors the user can cause (``RecsysError``) print ``error: <message>`` to stderr and exit with
status 2; they never show a traceback.
"""

from __future__ import annotations

import sys

import typer

from pipelines.demo import demo
from pipelines.evaluate import evaluate
from pipelines.export import export
from pipelines.health import health_command
from pipelines.load_features import load_features
from pipelines.prepare import prepare
from pipelines.recommend import recommend_command
from pipelines.serve import serve_command
from pipelines.synth import synth
from pipelines.train import train_command
from recsys.errors import RecsysError

EXIT_USER_ERROR = 2

app = typer.Typer(
    name="recsys",
    help="Attention-based sequential recommender: prepare data, train, evaluate, export, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("synth")(synth)
app.command("prepare")(prepare)
app.command("train")(train_command)
app.command("evaluate")(evaluate)
app.command("export")(export)
app.command("demo")(demo)
app.command("load-features")(load_features)
app.command("serve")(serve_command)
app.command("recommend")(recommend_command)
app.command("health")(health_command)


def main() -> None:
    """Console-script entry: run the app and turn domain errors into a clean exit."""
    try:
        app(prog_name="recsys")
    except RecsysError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


if __name__ == "__main__":
    main()
