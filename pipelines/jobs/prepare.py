"""``recsys prepare``: an interaction log -> a prepared dataset folder (written atomically)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from pipelines.console import console, dataset_summary
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


def prepare(
    input_path: Annotated[
        Path, typer.Option("--input", help="Interaction log file (see --format).")
    ],
    out: Annotated[Path, typer.Option(help="Folder to write the prepared dataset to.")],
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--format",
            help="Input format; 'auto' detects it from the file name and first line.",
        ),
    ] = "auto",
    user_col: Annotated[str, typer.Option(help="Input column holding the user id.")] = "user_id",
    item_col: Annotated[str, typer.Option(help="Input column holding the item id.")] = "item_id",
    time_col: Annotated[
        str,
        typer.Option(
            help="Input column holding the event time (epoch s/ms or ISO-8601). Without it, "
            "input order is the time order."
        ),
    ] = "timestamp",
    rating_col: Annotated[
        str | None, typer.Option(help="Input column holding a rating (default: 'rating' if any).")
    ] = None,
    time_unit: Annotated[TimeUnit, typer.Option(help="Unit of numeric times.")] = "auto",
    drop_duplicates: Annotated[
        bool, typer.Option(help="Drop exact duplicate events (same user, item, time, rating).")
    ] = False,
    min_rating: Annotated[
        float | None, typer.Option(help="Keep only events with a rating at least this.")
    ] = None,
    min_user_interactions: Annotated[
        int, typer.Option(min=1, help="k-core: minimum events per user (iterated to a fixpoint).")
    ] = 1,
    min_item_interactions: Annotated[
        int, typer.Option(min=1, help="k-core: minimum events per item (iterated to a fixpoint).")
    ] = 1,
    split: Annotated[
        SplitStrategy,
        typer.Option(
            help="leave-one-out: last event per user is test, the one before validation. "
            "temporal: global time cut-offs.",
        ),
    ] = "leave-one-out",
    validation_cutoff: Annotated[
        str | None, typer.Option(help="temporal: validation starts here (ISO-8601 or epoch s).")
    ] = None,
    test_cutoff: Annotated[
        str | None, typer.Option(help="temporal: test starts here (ISO-8601 or epoch s).")
    ] = None,
    validation_fraction: Annotated[
        float, typer.Option(help="temporal, without cut-offs: share of events in validation.")
    ] = 0.1,
    test_fraction: Annotated[
        float, typer.Option(help="temporal, without cut-offs: share of events in test.")
    ] = 0.1,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Read, clean, index and split an interaction log into a prepared dataset folder."""
    config = PrepareConfig(
        log_format=log_format,
        mapping=ColumnMapping(
            user_col=user_col,
            item_col=item_col,
            time_col=time_col,
            rating_col=rating_col,
            time_unit=time_unit,
        ),
        cleaning=CleaningConfig(
            drop_duplicates=drop_duplicates,
            min_rating=min_rating,
            min_user_interactions=min_user_interactions,
            min_item_interactions=min_item_interactions,
        ),
        split=SplitConfig(
            strategy=split,
            validation_cutoff=parse_moment(validation_cutoff, "--validation-cutoff"),
            test_cutoff=parse_moment(test_cutoff, "--test-cutoff"),
            validation_fraction=validation_fraction,
            test_fraction=test_fraction,
        ),
    )
    run_prepare(input_path, out, config, overwrite=overwrite)


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
