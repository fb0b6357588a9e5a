"""``recsys prepare``: an interaction log -> a prepared dataset folder (written atomically)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import Field

from pipelines.console import console, dataset_summary
from pipelines.options import OVERWRITE, Option, config_command
from recsys.config import Config
from recsys.data import (
    CleaningConfig,
    ColumnMapping,
    LogFormat,
    PrepareConfig,
    SplitConfig,
    SplitStrategy,
    TimeUnit,
    prepare_dataset,
    write_prepared,
)
from recsys.errors import ConfigError


def parse_moment(value: str | None, flag: str) -> datetime | None:
    """An ISO-8601 date/time or epoch seconds; naive values are UTC. Errors name the flag."""
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as err:
        raise ConfigError(
            f"{flag} {value!r} is not a time: use ISO-8601 (2024-05-01T00:00:00) or epoch seconds"
        ) from err
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class PrepareSettings(Config):
    """How ``recsys prepare`` reads, cleans and splits a log (flat flags over ``PrepareConfig``'s
    sections: reading, cleaning, splitting)."""

    format: LogFormat = "auto"
    """Input format; 'auto' detects it from the file name and first line."""
    user_col: str = "user_id"
    """Input column holding the user id."""
    item_col: str = "item_id"
    """Input column holding the item id."""
    time_col: str = "timestamp"
    """Input column holding the event time (epoch s/ms or ISO-8601). Without it, input order is
    the time order."""
    rating_col: str | None = None
    """Input column holding a rating (default: 'rating' if any)."""
    time_unit: TimeUnit = "auto"
    """Unit of numeric times."""
    drop_duplicates: bool = False
    """Drop exact duplicate events (same user, item, time, rating)."""
    min_rating: float | None = None
    """Keep only events with a rating at least this."""
    min_user_interactions: int = Field(1, ge=1)
    """k-core: minimum events per user (iterated to a fixpoint)."""
    min_item_interactions: int = Field(1, ge=1)
    """k-core: minimum events per item (iterated to a fixpoint)."""
    split: SplitStrategy = "leave-one-out"
    """leave-one-out: last event per user is test, the one before validation. temporal: global
    time cut-offs."""
    validation_cutoff: str | None = None
    """temporal: validation starts here (ISO-8601 or epoch s)."""
    test_cutoff: str | None = None
    """temporal: test starts here (ISO-8601 or epoch s)."""
    validation_fraction: float = 0.1
    """temporal, without cut-offs: share of events in validation."""
    test_fraction: float = 0.1
    """temporal, without cut-offs: share of events in test."""

    def prepare_config(self) -> PrepareConfig:
        """The library's config (its sections check the ranges and name the flag)."""
        return PrepareConfig(
            log_format=self.format,
            mapping=ColumnMapping(
                user_col=self.user_col,
                item_col=self.item_col,
                time_col=self.time_col,
                rating_col=self.rating_col,
                time_unit=self.time_unit,
            ),
            cleaning=CleaningConfig(
                drop_duplicates=self.drop_duplicates,
                min_rating=self.min_rating,
                min_user_interactions=self.min_user_interactions,
                min_item_interactions=self.min_item_interactions,
            ),
            split=SplitConfig(
                strategy=self.split,
                validation_cutoff=parse_moment(self.validation_cutoff, "--validation-cutoff"),
                test_cutoff=parse_moment(self.test_cutoff, "--test-cutoff"),
                validation_fraction=self.validation_fraction,
                test_fraction=self.test_fraction,
            ),
        )


def _prepare(settings: PrepareSettings, input_path: Path, out: Path, overwrite: bool) -> None:
    run_prepare(input_path, out, settings.prepare_config(), overwrite=overwrite)


prepare = config_command(
    PrepareSettings,
    _prepare,
    [
        Option(
            "input_path",
            Annotated[Path, typer.Option("--input", help="Interaction log file (see --format).")],
        ),
        Option(
            "out", Annotated[Path, typer.Option(help="Folder to write the prepared dataset to.")]
        ),
        OVERWRITE,
    ],
    doc="Read, clean, index and split an interaction log into a prepared dataset folder.",
)


def run_prepare(input_path: Path, out: Path, config: PrepareConfig, overwrite: bool) -> None:
    """Prepare and write with progress, then print the summary."""
    if out.exists() and not overwrite:
        # Checked up front as well, so a long preparation is not wasted on a refusal.
        raise ConfigError(f"output {out} already exists (pass --overwrite to replace it)")
    started = time.perf_counter()
    with console.status("preparing") as status:
        dataset = prepare_dataset(
            input_path, config, on_step=lambda name: status.update(f"{name} {input_path}")
        )
        status.update(f"writing {out}")
        write_prepared(dataset, out, overwrite=overwrite)
    console.print(dataset_summary(dataset.stats, title=f"prepared dataset {out}"))
    console.print(f"done in {time.perf_counter() - started:.1f} s")
