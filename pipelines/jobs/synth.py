"""``recsys synth``: write a synthetic interaction log (the project's embedded default data)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from pipelines.console import console
from pipelines.options import OVERWRITE, Option, config_command
from recsys.config import Config
from recsys.data.synthetic import SynthConfig, generate_log, write_log
from recsys.errors import OutputExistsError


class SynthSettings(Config):
    """The size and seed of the log ``recsys synth`` writes (its structure keeps the defaults of
    ``SynthConfig``)."""

    users: int = SynthConfig.n_users
    """Number of users."""
    items: int = SynthConfig.n_items
    """Number of items."""
    events: int = SynthConfig.n_events
    """Number of events (>= users)."""
    seed: int = 0
    """Random seed: the same seed gives the same log."""

    def synth_config(self) -> SynthConfig:
        """The generator's config (it checks the ranges and names the field)."""
        return SynthConfig(
            n_users=self.users, n_items=self.items, n_events=self.events, seed=self.seed
        )


def _synth(settings: SynthSettings, out: Path, overwrite: bool) -> None:
    run_synth(settings.synth_config(), out, overwrite)


synth = config_command(
    SynthSettings,
    _synth,
    [
        Option("out", Annotated[Path, typer.Option(help="Log file to write: .parquet or .csv.")]),
        OVERWRITE,
    ],
    doc="Generate a log with power-law popularity and learnable sequential structure.",
)


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
