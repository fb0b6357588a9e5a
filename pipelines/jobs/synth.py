"""``recsys synth``: write a synthetic interaction log (the project's embedded default data)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from pipelines.console import console
from recsys.data.synthetic import SynthConfig, generate_log, write_log
from recsys.errors import OutputExistsError


def synth(
    out: Annotated[Path, typer.Option(help="Log file to write: .parquet or .csv.")],
    users: Annotated[int, typer.Option(help="Number of users.")] = SynthConfig.n_users,
    items: Annotated[int, typer.Option(help="Number of items.")] = SynthConfig.n_items,
    events: Annotated[int, typer.Option(help="Number of events (>= users).")] = (
        SynthConfig.n_events
    ),
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same log.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Generate a log with power-law popularity and learnable sequential structure."""
    run_synth(SynthConfig(n_users=users, n_items=items, n_events=events, seed=seed), out, overwrite)


def run_synth(config: SynthConfig, out: Path, overwrite: bool) -> Path:
    """Generate and write the log, refusing to replace an existing file unless asked."""
    if out.exists() and not overwrite:
        raise OutputExistsError(f"output {out} already exists (pass --overwrite to replace it)")
    started = time.perf_counter()
    with console.status(f"generating {config.n_events:,} events"):
        frame = generate_log(config)
        write_log(frame, out)
    console.print(
        f"wrote {frame.height:,} events of {config.n_users:,} users over {config.n_items:,} "
        f"items to {out} in {time.perf_counter() - started:.1f} s"
    )
    return out
