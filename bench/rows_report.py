"""The results files of a benchmark that accumulates one row per size: JSON, Markdown, PNG.

``bench/scale.py`` and ``bench/prepare_large.py`` run one size at a time and keep every size
measured so far: each run rewrites the three files from all the rows, with the same footer.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def write_rows_report(
    results: Path,
    stem: str,
    rows: list[dict[str, Any]],
    lines: list[str],
    plot: Callable[[Path], None],
    figure_caption: str,
    reproduce: str,
) -> None:
    """Write ``STEM.json`` (the rows), ``STEM.md`` (``lines``, the figure, when and where) and
    ``STEM.png`` (``plot``), each replaced in one step."""
    from recsys.io import atomic_write_text, write_json

    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    host = f"{platform.machine()}, {os.cpu_count()} CPUs"
    results.mkdir(parents=True, exist_ok=True)
    write_json(results / f"{stem}.json", {"updated": stamp, "host": host, "rows": rows})
    footer = ["", f"![{figure_caption}]({stem}.png)", "", f"Updated {stamp} on {host}. Reproduce: "
              f"`{reproduce}`."]  # fmt: skip
    atomic_write_text(results / f"{stem}.md", "\n".join([*lines, *footer]) + "\n")
    plot(results / f"{stem}.png")
