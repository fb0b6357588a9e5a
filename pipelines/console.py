"""Shared terminal output for the jobs: one rich console on stderr for progress, and summaries."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=True)
"""Progress and logs go to stderr, so that stdout stays machine-readable where a job prints data."""


def dataset_summary(stats: dict[str, Any], title: str = "prepared dataset") -> Table:
    """A table of the numbers people check first in a prepared dataset's ``stats.json``."""
    table = Table(title=title, show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("users", f"{stats['num_users']:,}")
    table.add_row("items", f"{stats['num_items']:,}")
    table.add_row("interactions", f"{stats['num_interactions']:,}")
    cleaning = stats["cleaning"]
    table.add_row("rows read", f"{cleaning['rows_read']:,}")
    for key in (
        "null_ids_dropped",
        "null_timestamps_dropped",
        "duplicates_dropped",
        "below_min_rating_dropped",
        "k_core_dropped",
    ):
        if cleaning[key]:
            table.add_row(key.replace("_", " "), f"{cleaning[key]:,}")
    for name, counts in stats["splits"].items():
        table.add_row(
            f"{name} split", f"{counts['interactions']:,} events / {counts['users']:,} users"
        )
    lengths = stats["sequence_length"]
    table.add_row(
        "events per user",
        f"mean {lengths['mean']:.2f}, median {lengths['median']:g}, max {lengths['max']:,}",
    )
    table.add_row("split rule", ", ".join(f"{k}={v}" for k, v in stats["split"].items()))
    return table
