"""``recsys synth``: write a synthetic interaction log (the project's embedded default data)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Self

import typer
from pydantic import Field, model_validator

from pipelines.console import console
from pipelines.options import OVERWRITE, Option, config_command
from recsys.config import Config
from recsys.data.synthetic import SynthConfig, generate_log, write_log
from recsys.errors import OutputExistsError


class SynthSettings(Config):
    """The size and seed of the log ``recsys synth`` writes (its structure keeps the defaults of
    ``SynthConfig``)."""

    users: int = Field(SynthConfig.n_users, ge=1)
    """Number of users."""
    items: int = Field(SynthConfig.n_items, ge=2)
    """Number of items."""
    events: int = Field(SynthConfig.n_events, ge=1)
    """Number of events (>= users)."""
    seed: int = Field(0, ge=0)
    """Random seed: the same seed gives the same log."""

    @model_validator(mode="after")
    def _every_user_has_an_event(self) -> Self:
        if self.events < self.users:
            raise ValueError(
                f"--events ({self.events}) must be >= --users ({self.users}): every user gets at "
                "least one event"
            )
        return self

    def synth_config(self) -> SynthConfig:
        """The generator's config (the sizes were checked above, on the flags' names)."""
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
