"""Logs near the size of memory: ``recsys prepare`` at 10M and 100M events, peak RSS and time.

    .venv/bin/python bench/prepare_large.py                 # 10M and 100M events (~10 minutes)
    .venv/bin/python bench/prepare_large.py --size 1M       # a smoke run

Each size runs the command a user runs (``recsys prepare --input LOG --out DIR
--drop-duplicates --min-user-interactions 5 --min-item-interactions 5``) in a process of its own;
its peak RSS is ``wait4``'s ``ru_maxrss`` of that process alone, and its wall time includes
interpreter start-up. The logs are ``recsys synth`` Parquet files with ten events per user and
fifty per item (the 10M one is ``bench/prepare.py``'s), generated once into ``bench/.work`` and
reused. Target (issue [G]): 100M events within 6 GB peak RSS on the 2-core, 24 GB machine.
``bench/prepare.py`` compares the same pipeline with pandas at 10M.

Writes ``prepare_large.{json,md,png}`` to ``--results``; a size run again replaces its row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.rows_report import write_rows_report  # noqa: E402  (after the path set-up)
from bench.scale import stage  # noqa: E402

WORK: Final = REPO_ROOT / "bench" / ".work"
STEM: Final = "prepare_large"
SIZES: Final[dict[str, dict[str, int]]] = {
    "1M": {"events": 1_000_000, "users": 100_000, "items": 20_000},
    "10M": {"events": 10_000_000, "users": 1_000_000, "items": 200_000},
    "100M": {"events": 100_000_000, "users": 10_000_000, "items": 2_000_000},
}
TARGET_EVENTS: Final = 100_000_000
TARGET_PEAK_GB: Final = 6.0


def log(message: str) -> None:
    print(f"[prepare-large] {message}", file=sys.stderr, flush=True)


def ensure_log(size: dict[str, int]) -> Path:
    """The cached synthetic log of this size, generated once (``bench/prepare.py``'s cache)."""
    from bench.prepare import BenchConfig
    from bench.prepare import ensure_log as ensure_cached_log

    config = BenchConfig(
        users=size["users"], items=size["items"], events=size["events"], seed=0,
        min_user_interactions=5, min_item_interactions=5, repeats=1, workdir=WORK,
        results=WORK, quick=False,
    )  # fmt: skip
    return ensure_cached_log(config)


def run_size(name: str) -> dict[str, Any]:
    """Prepare one size with the real command; what it cost and what it produced."""
    size = SIZES[name]
    source = ensure_log(size)
    out = WORK / f"prepared-large-{name}"
    measured = stage(
        f"prepare {name}",
        "prepare",
        "--input",
        str(source),
        "--out",
        str(out),
        "--overwrite",
        "--drop-duplicates",
        "--min-user-interactions",
        "5",
        "--min-item-interactions",
        "5",
        log_path=WORK / f"prepare-large-{name}.log",
    )
    stats = json.loads((out / "stats.json").read_text())
    peak_bytes = measured["peak_rss_gib"] * 2**30
    return {
        "size": name,
        **size,
        "log_mib": round(source.stat().st_size / 2**20, 1),
        "seconds": measured["seconds"],
        "peak_rss_gb": round(peak_bytes / 1e9, 3),
        "peak_bytes_per_event": round(peak_bytes / size["events"], 1),
        "kept": {
            "users": stats["num_users"],
            "items": stats["num_items"],
            "interactions": stats["num_interactions"],
        },
    }


def _markdown(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "# Preparing logs near the size of memory",
        "",
        "`recsys prepare` (drop duplicates, 5/5-core, leave-one-out) on synthetic Parquet logs, "
        "each size in a process of its own; wall seconds include interpreter start-up; peak "
        "RSS is that process's `ru_maxrss`.",
        "",
        "| events | users | items | log (MiB) | seconds | peak RSS (GB) | bytes per event "
        "| kept interactions |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {row['events']:,} | {row['users']:,} | {row['items']:,} | {row['log_mib']:,} "
        f"| {row['seconds']} | {row['peak_rss_gb']} | {row['peak_bytes_per_event']} "
        f"| {row['kept']['interactions']:,} |"
        for row in rows
    ]
    at_target = [row for row in rows if row["events"] == TARGET_EVENTS]
    lines += ["", "| target | measured | result |", "|---|---:|---|"]
    if at_target:
        peak = at_target[0]["peak_rss_gb"]
        verdict = "pass" if peak <= TARGET_PEAK_GB else "**miss**"
        lines.append(
            f"| {TARGET_EVENTS:,} events within {TARGET_PEAK_GB:g} GB | {peak} GB | {verdict} |"
        )
    else:
        lines.append(f"| {TARGET_EVENTS:,} events within {TARGET_PEAK_GB:g} GB | not run | |")
    return lines


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recsys.evaluation.plots import save_figure

    events = [row["events"] for row in rows]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(events, [row["peak_rss_gb"] for row in rows], marker="o", label="peak RSS")
    axes[0].axhline(TARGET_PEAK_GB, color="red", linestyle="--", label="target at 100M")
    axes[0].set_ylabel("GB")
    axes[1].plot(events, [row["seconds"] for row in rows], marker="o")
    axes[1].set_ylabel("seconds")
    for axis, title in zip(axes, ("peak RSS", "wall time"), strict=True):
        axis.set_xscale("log")
        axis.set_xlabel("events in the log")
        axis.set_title(f"recsys prepare: {title}")
    axes[0].legend()
    save_figure(figure, path)


def _write(rows: list[dict[str, Any]], results: Path) -> None:
    ordered = sorted(rows, key=lambda row: row["events"])
    write_rows_report(
        results,
        STEM,
        ordered,
        _markdown(ordered),
        lambda path: _plot(ordered, path),
        "peak RSS and time against log size",
        ".venv/bin/python bench/prepare_large.py --size NAME",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", action="append", choices=list(SIZES))
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    store = args.results / f"{STEM}.json"
    rows = (
        {row["size"]: row for row in json.loads(store.read_text())["rows"]}
        if (store.is_file())
        else {}
    )
    for name in args.size or ["10M", "100M"]:
        rows[name] = run_size(name)
        _write(list(rows.values()), args.results)
        log(f"{name}: {rows[name]['seconds']} s, peak {rows[name]['peak_rss_gb']} GB")
    log(f"wrote {args.results / STEM}.{{json,md,png}}")


if __name__ == "__main__":
    main()
