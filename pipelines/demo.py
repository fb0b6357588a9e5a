"""``recsys demo``: the main job end to end on embedded defaults (synthetic data, CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.console import console
from pipelines.prepare import run_prepare
from pipelines.synth import run_synth
from recsys.data import CleaningConfig, PrepareConfig
from recsys.data.synthetic import SynthConfig


def demo(
    workdir: Annotated[
        Path, typer.Option(help="Folder for everything the demo writes (replaced on each run).")
    ] = Path("runs/demo"),
    users: Annotated[int, typer.Option(help="Synthetic users.")] = 2_000,
    items: Annotated[int, typer.Option(help="Synthetic items.")] = 500,
    events: Annotated[int, typer.Option(help="Synthetic events.")] = 40_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Synthesize a log, prepare it, and print the dataset summary."""
    console.rule("1/2 synthesize an interaction log")
    log_path = run_synth(
        SynthConfig(n_users=users, n_items=items, n_events=events, seed=seed),
        workdir / "log.parquet",
        overwrite=True,
    )
    console.rule("2/2 prepare the dataset (5-core, leave-one-out)")
    five_core = CleaningConfig(min_user_interactions=5, min_item_interactions=5)
    run_prepare(log_path, workdir / "data", PrepareConfig(cleaning=five_core), overwrite=True)
    console.rule("demo finished")
    console.print(f"everything is under {workdir}")
