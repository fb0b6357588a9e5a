"""Data-preparation benchmark: the polars path (``recsys.data``) against plain pandas.

    .venv/bin/python bench/prepare.py           # 10M events, 1M users, 200k items (`make bench`)
    .venv/bin/python bench/prepare.py --quick   # 200k events: a smoke run

The synthetic log is generated once and cached in ``--workdir``. Each path then runs in its own
subprocess (``python -m bench.prepare --run-path polars|pandas``), so the peak RSS each child
reports (``getrusage(RUSAGE_SELF).ru_maxrss``) is that path's alone. The child times the whole
pipeline, read -> clean (nulls, duplicates, k-core) -> index -> order/split -> summarise -> write,
step by step, excluding interpreter start-up and imports (reported apart), and prints one JSON
line on stdout.

Writes ``prepare.json``, ``prepare.md`` and ``prepare.png`` to ``--results`` (``prepare-quick.*``
with ``--quick``). Targets, at full size on the 2-core reference machine: polars under 30 s and
under 3 GB (3e9 bytes) peak RSS, and at least 5x faster than pandas. Exits 1 when the two paths
disagree on any count or write different datasets: the pandas path doubles as a correctness check.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from recsys.io import atomic_write_text

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
FULL_SIZE: Final = {"users": 1_000_000, "items": 200_000, "events": 10_000_000}
QUICK_SIZE: Final = {"users": 20_000, "items": 4_000, "events": 200_000}
TARGET_POLARS_SECONDS: Final = 30.0
TARGET_POLARS_RSS_BYTES: Final = 3_000_000_000
TARGET_SPEEDUP: Final = 5.0
STEPS: Final = (
    "reading",
    "cleaning",
    "indexing",
    "ordering and splitting",
    "summarising",
    "writing",
)
PathName = Literal["polars", "pandas"]
PATHS: Final[tuple[PathName, ...]] = ("polars", "pandas")
MIB: Final = 1024 * 1024


@dataclass(frozen=True)
class BenchConfig:
    """What one benchmark run measures; built from the flags and checked by ``parse_args``."""

    users: int
    items: int
    events: int
    seed: int
    min_user_interactions: int
    min_item_interactions: int
    repeats: int
    workdir: Path
    results: Path
    quick: bool

    @property
    def at_target_size(self) -> bool:
        """Whether the targets apply: they are stated for the full-size log."""
        sizes = {"users": self.users, "items": self.items, "events": self.events}
        return sizes == FULL_SIZE

    @property
    def log_path(self) -> Path:
        """The cached synthetic log, named by everything that decides its content."""
        name = f"synthetic-u{self.users}-i{self.items}-e{self.events}-s{self.seed}.parquet"
        return self.workdir / name

    @property
    def results_stem(self) -> str:
        return "prepare-quick" if self.quick else "prepare"


# --------------------------------------------------------------------------------------------
# Child: one path, one run, one JSON line on stdout.


def run_path(path: PathName, log: Path, out: Path, min_user: int, min_item: int) -> dict[str, Any]:
    """Prepare ``log`` into ``out`` with one implementation; return times, peak RSS and counts."""
    start_imports = time.perf_counter()
    if path == "polars":
        from recsys.data import CleaningConfig, PrepareConfig, prepare_dataset, write_prepared
    else:
        from bench.pandas_prepare import (
            PandasPrepareConfig,
            prepare_pandas,
            write_prepared_pandas,
        )
    import_seconds = time.perf_counter() - start_imports
    baseline_rss = _peak_rss_bytes()

    load_average = os.getloadavg()[0]
    timer = _StepTimer(path)
    cpu_start = _cpu_seconds()
    start = time.perf_counter()
    if path == "polars":
        cleaning = CleaningConfig(
            drop_duplicates=True,
            min_user_interactions=min_user,
            min_item_interactions=min_item,
        )
        dataset = prepare_dataset(log, PrepareConfig(cleaning=cleaning), on_step=timer.step)
        timer.step("writing")
        write_prepared(dataset, out, overwrite=True)
        stats = dataset.stats
    else:
        config = PandasPrepareConfig(
            drop_duplicates=True,
            min_user_interactions=min_user,
            min_item_interactions=min_item,
        )
        prepared = prepare_pandas(log, config, on_step=timer.step)
        timer.step("writing")
        write_prepared_pandas(prepared, out, overwrite=True)
        stats = prepared.stats
    timer.finish()
    seconds = time.perf_counter() - start
    return {
        "path": path,
        "seconds": seconds,
        "cpu_seconds": _cpu_seconds() - cpu_start,
        "load_average_at_start": load_average,
        "steps": timer.seconds,
        "import_seconds": import_seconds,
        "peak_rss_bytes": _peak_rss_bytes(),
        "baseline_rss_bytes": baseline_rss,
        "counts": _counts(stats),
        "output": str(out),
    }


class _StepTimer:
    """Records how long each named step took and prints progress to stderr."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.seconds: dict[str, float] = {}
        self._current: str | None = None
        self._started = time.perf_counter()

    def step(self, name: str) -> None:
        self.finish()
        self._current = name
        self._started = time.perf_counter()
        _log(f"[{self.label}] {name} ...")

    def finish(self) -> None:
        if self._current is not None:
            elapsed = time.perf_counter() - self._started
            self.seconds[self._current] = elapsed
            _log(f"[{self.label}] {self._current}: {elapsed:.2f} s")
        self._current = None


def _counts(stats: dict[str, Any]) -> dict[str, Any]:
    """The numbers both paths must agree on."""
    return {
        "num_users": stats["num_users"],
        "num_items": stats["num_items"],
        "num_interactions": stats["num_interactions"],
        "splits": stats["splits"],
        "cleaning": dict(stats["cleaning"]),
    }


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_bytes() -> int:
    """This process's peak resident set size (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


# --------------------------------------------------------------------------------------------
# Parent: generate once, run each path in a subprocess, check, report.


def run_benchmark(config: BenchConfig, command: str) -> int:
    """Run the whole benchmark and write the results; return the exit status."""
    load_before = os.getloadavg()
    log = ensure_log(config)
    runs: dict[PathName, list[dict[str, Any]]] = {path: [] for path in PATHS}
    for repeat in range(config.repeats):
        for path in PATHS:
            _log(f"[bench] {path}: run {repeat + 1} of {config.repeats}")
            runs[path].append(_run_child(config, path, log))
    mismatches = _count_mismatches(runs["polars"][-1]["counts"], runs["pandas"][-1]["counts"])
    if not mismatches:
        mismatches = _output_mismatches(
            Path(runs["polars"][-1]["output"]), Path(runs["pandas"][-1]["output"])
        )
    report = _report(config, runs, mismatches, load_before, command)
    stem = config.results / config.results_stem
    atomic_write_text(stem.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    atomic_write_text(stem.with_suffix(".md"), render_markdown(report))
    write_chart(report, stem.with_suffix(".png"))
    _log(f"[bench] wrote {stem}.json, .md and .png")
    summary = report["summary"]
    _log(
        f"[bench] polars {summary['polars']['seconds']:.2f} s, "
        f"{summary['polars']['peak_rss_mib']:.0f} MiB; pandas "
        f"{summary['pandas']['seconds']:.2f} s, {summary['pandas']['peak_rss_mib']:.0f} MiB; "
        f"speedup {summary['speedup']:.2f}x"
    )
    for name, target in report["targets"].items():
        _log(f"[bench] target {name}: {'pass' if target['passed'] else 'MISS'}")
    if mismatches:
        for line in mismatches:
            _log(f"[bench] MISMATCH: {line}")
        return 1
    return 0


def ensure_log(config: BenchConfig) -> Path:
    """Generate the synthetic log unless a cached copy with the same parameters exists."""
    path = config.log_path
    if path.is_file():
        _log(f"[bench] using cached log {path}")
        return path
    from recsys.data.synthetic import SynthConfig, generate_log, write_log

    _log(f"[bench] generating {config.events:,} events for {config.users:,} users ...")
    start = time.perf_counter()
    synth = SynthConfig(
        n_users=config.users, n_items=config.items, n_events=config.events, seed=config.seed
    )
    write_log(generate_log(synth), path)
    _log(f"[bench] wrote {path} in {time.perf_counter() - start:.1f} s")
    return path


def _run_child(config: BenchConfig, path: PathName, log: Path) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench.prepare",
        "--run-path",
        path,
        "--log",
        str(log),
        "--out",
        str(config.workdir / f"prepared-{path}"),
        "--min-user-interactions",
        str(config.min_user_interactions),
        "--min-item-interactions",
        str(config.min_item_interactions),
    ]
    start = time.perf_counter()
    completed = subprocess.run(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, check=False
    )
    process_seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"bench: the {path} run failed with exit status {completed.returncode}")
    lines = completed.stdout.strip().splitlines()
    if not lines:
        raise SystemExit(f"bench: the {path} run printed no result")
    result: dict[str, Any] = json.loads(lines[-1])
    result["process_seconds"] = process_seconds
    return result


def _count_mismatches(polars: dict[str, Any], pandas: dict[str, Any]) -> list[str]:
    return [
        f"{key}: polars {polars.get(key)!r} != pandas {pandas.get(key)!r}"
        for key in sorted(set(polars) | set(pandas))
        if polars.get(key) != pandas.get(key)
    ]


def _output_mismatches(polars_dir: Path, pandas_dir: Path) -> list[str]:
    """Compare the two written folders table by table (read with polars, types aligned)."""
    import polars as pl

    from recsys.data import columns as C
    from recsys.data.prepared import INTERACTIONS_FILE, ITEMS_FILE, USERS_FILE

    _log("[bench] comparing the two prepared folders ...")
    common_types: dict[str, type[pl.DataType]] = {
        C.USER_IDX: pl.Int64,
        C.ITEM_IDX: pl.Int64,
        C.USER_ID: pl.Int64,
        C.ITEM_ID: pl.Int64,
        C.POSITION: pl.Int64,
        C.COUNT: pl.Int64,
        "train_count": pl.Int64,
        C.SPLIT: pl.String,
    }
    mismatches = []
    for name in (INTERACTIONS_FILE, USERS_FILE, ITEMS_FILE):
        tables = [pl.read_parquet(folder / name) for folder in (polars_dir, pandas_dir)]
        if tables[0].columns != tables[1].columns:
            mismatches.append(f"{name}: columns {tables[0].columns} != {tables[1].columns}")
            continue
        aligned = [
            table.with_columns(
                pl.col(column).cast(dtype)
                for column, dtype in common_types.items()
                if column in table.columns
            )
            for table in tables
        ]
        if not aligned[0].equals(aligned[1]):
            mismatches.append(f"{name}: the polars and pandas tables differ")
    return mismatches


def _report(
    config: BenchConfig,
    runs: dict[PathName, list[dict[str, Any]]],
    mismatches: list[str],
    load_before: tuple[float, float, float],
    command: str,
) -> dict[str, Any]:
    summary: dict[str, Any] = {path: _summarise_runs(runs[path]) for path in PATHS}
    polars, pandas = summary["polars"], summary["pandas"]
    summary["speedup"] = pandas["seconds"] / polars["seconds"]
    targets = {
        "polars_under_30_s": {
            "target": f"polars < {TARGET_POLARS_SECONDS:g} s",
            "measured": round(polars["seconds"], 2),
            "passed": polars["seconds"] < TARGET_POLARS_SECONDS,
        },
        "polars_under_3_gb_rss": {
            "target": f"polars peak RSS < {TARGET_POLARS_RSS_BYTES / 1e9:g} GB",
            "measured": round(polars["peak_rss_bytes"] / 1e9, 3),
            "passed": polars["peak_rss_bytes"] < TARGET_POLARS_RSS_BYTES,
        },
        "speedup_at_least_5x": {
            "target": f"pandas seconds / polars seconds >= {TARGET_SPEEDUP:g}",
            "measured": round(summary["speedup"], 2),
            "passed": summary["speedup"] >= TARGET_SPEEDUP,
        },
    }
    return {
        "benchmark": "prepare",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "parameters": {
            key: str(value) if isinstance(value, Path) else value
            for key, value in asdict(config).items()
        },
        "at_target_size": config.at_target_size,
        "machine": _machine_info(load_before),
        "summary": summary,
        "targets": targets,
        "all_targets_passed": all(t["passed"] for t in targets.values()),
        "counts_agree": not mismatches,
        "mismatches": mismatches,
        "counts": runs["polars"][-1]["counts"],
        "runs": runs,
    }


def _summarise_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median times over the repeats, the largest peak RSS."""
    peak = max(run["peak_rss_bytes"] for run in runs)
    baseline = max(run["baseline_rss_bytes"] for run in runs)
    return {
        "seconds": statistics.median(run["seconds"] for run in runs),
        "process_seconds": statistics.median(run["process_seconds"] for run in runs),
        "cpu_seconds": statistics.median(run["cpu_seconds"] for run in runs),
        "import_seconds": statistics.median(run["import_seconds"] for run in runs),
        "steps": {
            step: statistics.median(run["steps"].get(step, 0.0) for run in runs) for step in STEPS
        },
        "peak_rss_bytes": peak,
        "peak_rss_mib": peak / MIB,
        "baseline_rss_mib": baseline / MIB,
    }


def _machine_info(load_before: tuple[float, float, float]) -> dict[str, Any]:
    import numpy
    import pandas
    import polars
    import pyarrow

    page_size = os.sysconf("SC_PAGE_SIZE")
    total_memory = os.sysconf("SC_PHYS_PAGES") * page_size
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "memory_gib": round(total_memory / 1024**3, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "polars": polars.__version__,
        "polars_threads": polars.thread_pool_size(),
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "numpy": numpy.__version__,
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --------------------------------------------------------------------------------------------
# Results files.


def render_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown page: headline table, steps, targets, machine, command."""
    summary = report["summary"]
    polars, pandas = summary["polars"], summary["pandas"]
    params = report["parameters"]
    machine = report["machine"]
    counts = report["counts"]
    repeats = params["repeats"]
    rows = [
        (
            f"pipeline seconds (median of {repeats})",
            f"{polars['seconds']:.2f}",
            f"{pandas['seconds']:.2f}",
        ),
        *(
            (f"- {step}", f"{polars['steps'][step]:.2f}", f"{pandas['steps'][step]:.2f}")
            for step in STEPS
        ),
        (
            "CPU seconds, all threads (median)",
            f"{polars['cpu_seconds']:.2f}",
            f"{pandas['cpu_seconds']:.2f}",
        ),
        (
            "process seconds (with start-up and imports)",
            f"{polars['process_seconds']:.2f}",
            f"{pandas['process_seconds']:.2f}",
        ),
        ("peak RSS (MiB)", f"{polars['peak_rss_mib']:.0f}", f"{pandas['peak_rss_mib']:.0f}"),
        (
            "RSS after imports (MiB)",
            f"{polars['baseline_rss_mib']:.0f}",
            f"{pandas['baseline_rss_mib']:.0f}",
        ),
    ]
    lines = [
        "# Data-preparation benchmark: polars vs pandas",
        "",
        f"{params['events']:,} synthetic events, {params['users']:,} users, "
        f"{params['items']:,} items (seed {params['seed']}); drop duplicates, "
        f"{params['min_user_interactions']}/{params['min_item_interactions']}-core, "
        "leave-one-out split. Each path runs in its own process; times cover read -> write "
        "and exclude interpreter start-up and imports.",
        "",
        "| | polars | pandas |",
        "|---|---:|---:|",
        *(f"| {name} | {a} | {b} |" for name, a, b in rows),
        "",
        f"**Speedup (pandas / polars): {summary['speedup']:.2f}x**",
        "",
        "| target | measured | result |",
        "|---|---:|---|",
        *(
            f"| {t['target']} | {t['measured']} | {'pass' if t['passed'] else '**miss**'} |"
            for t in report["targets"].values()
        ),
        "",
    ]
    if not report["at_target_size"]:
        lines += ["The targets are stated for the full-size log; this run is smaller.", ""]
    splits = counts["splits"]
    lines += [
        f"Counts ({'identical in both paths' if report['counts_agree'] else 'MISMATCH'}): "
        f"{counts['num_users']:,} users, {counts['num_items']:,} items, "
        f"{counts['num_interactions']:,} interactions "
        f"(train {splits['train']['interactions']:,}, "
        f"validation {splits['validation']['interactions']:,}, "
        f"test {splits['test']['interactions']:,}); k-core removed "
        f"{counts['cleaning']['k_core_dropped']:,} events in "
        f"{counts['cleaning']['k_core_iterations']} passes.",
        "",
        *(f"- mismatch: {line}" for line in report["mismatches"]),
        *([""] if report["mismatches"] else []),
        f"Machine: {machine['cpu_count']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB, {machine['platform']}; Python {machine['python']}, "
        f"polars {machine['polars']} ({machine['polars_threads']} threads), "
        f"pandas {machine['pandas']}, pyarrow {machine['pyarrow']}, numpy {machine['numpy']}. "
        f"Load average before/after: {machine['load_average_before']} / "
        f"{machine['load_average_after']}; 1-minute load at the start of each run: "
        + "; ".join(
            f"{path} {[round(run['load_average_at_start'], 2) for run in report['runs'][path]]}"
            for path in PATHS
        )
        + ". Other work on the machine slows polars (which uses every core) more than "
        "pandas (one core).",
        "",
        f"Run {report['created_at']}. Reproduce with:",
        "",
        "```",
        report["command"],
        "```",
        "",
    ]
    return "\n".join(lines)


def write_chart(report: dict[str, Any], path: Path) -> None:
    """Bar chart: seconds per step (stacked) and peak RSS, both paths, with the targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report["summary"]
    fig, (ax_time, ax_rss) = plt.subplots(1, 2, figsize=(10, 4.5))
    bottoms = [0.0 for _ in PATHS]
    colours = plt.get_cmap("tab10")
    for index, step in enumerate(STEPS):
        heights = [summary[name]["steps"][step] for name in PATHS]
        ax_time.bar(PATHS, heights, bottom=bottoms, label=step, color=colours(index))
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    for x, name in enumerate(PATHS):
        ax_time.annotate(
            f"{summary[name]['seconds']:.1f} s", (x, bottoms[x]), ha="center", va="bottom"
        )
    _target_line(ax_time, TARGET_POLARS_SECONDS, f"polars target {TARGET_POLARS_SECONDS:g} s")
    ax_time.set_ylim(0, 1.45 * max(TARGET_POLARS_SECONDS, *bottoms))
    ax_time.set_ylabel("seconds (read -> write)")
    ax_time.set_title(f"time: pandas / polars = {summary['speedup']:.2f}x")
    ax_time.legend(fontsize="small", loc="upper left", ncols=2)

    rss = [summary[name]["peak_rss_mib"] for name in PATHS]
    ax_rss.bar(PATHS, rss, color=[colours(0), colours(1)])
    for x, value in enumerate(rss):
        ax_rss.annotate(f"{value:,.0f} MiB", (x, value), ha="center", va="bottom")
    rss_target = TARGET_POLARS_RSS_BYTES / MIB
    _target_line(ax_rss, rss_target, f"polars target {TARGET_POLARS_RSS_BYTES / 1e9:g} GB")
    ax_rss.set_ylim(0, 1.2 * max(rss_target, *rss))
    ax_rss.set_ylabel("peak RSS (MiB)")
    ax_rss.set_title("peak memory")
    params = report["parameters"]
    fig.suptitle(
        f"prepare: {params['events']:,} events, {params['users']:,} users, "
        f"{params['items']:,} items"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(descriptor)
    os.chmod(staging, 0o644)
    try:
        fig.savefig(staging, format="png", dpi=120)
        os.replace(staging, path)
    finally:
        plt.close(fig)
        Path(staging).unlink(missing_ok=True)


def _target_line(axes: Any, value: float, label: str) -> None:
    axes.axhline(value, color="black", linestyle="--", linewidth=1)
    axes.annotate(label, (1.0, value), xycoords=("axes fraction", "data"), ha="right", va="bottom")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Command line.


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer (``_`` separators allowed) of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/prepare.py",
        description="Time data preparation with polars (recsys.data) and with plain pandas.",
    )
    size = parser.add_argument_group("log size (defaults: the full benchmark, or --quick's)")
    size.add_argument("--users", type=_positive_int, help="default 1000000 (--quick: 20000)")
    size.add_argument("--items", type=_positive_int, help="default 200000 (--quick: 4000)")
    size.add_argument("--events", type=_positive_int, help="default 10000000 (--quick: 200000)")
    parser.add_argument("--quick", action="store_true", help="a 200k-event smoke run")
    parser.add_argument(
        "--seed", type=_non_negative_int, default=0, help="generator seed (default 0)"
    )
    parser.add_argument(
        "--min-user-interactions", type=_positive_int, default=5, help="k-core, users (default 5)"
    )
    parser.add_argument(
        "--min-item-interactions", type=_positive_int, default=5, help="k-core, items (default 5)"
    )
    parser.add_argument(
        "--repeats", type=_positive_int, default=1, help="runs per path; the median is reported"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=REPO_ROOT / "bench" / ".work",
        help="cached logs and the prepared folders (default bench/.work)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=REPO_ROOT / "bench" / "results",
        help="where prepare.{json,md,png} go (default bench/results)",
    )
    # Internal: the parent starts one child per path with these.
    parser.add_argument("--run-path", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> BenchConfig:
    """Flags -> ``BenchConfig``; a bad combination exits through ``parser.error``."""
    args = parser.parse_args(argv)
    defaults = QUICK_SIZE if args.quick else FULL_SIZE
    sizes = {key: getattr(args, key) or default for key, default in defaults.items()}
    if sizes["events"] < sizes["users"]:
        parser.error(
            f"--events ({sizes['events']}) must be >= --users ({sizes['users']}): "
            "the generator gives every user at least one event"
        )
    if sizes["items"] < 2:
        parser.error(f"--items must be >= 2, got {sizes['items']}")
    return BenchConfig(
        users=sizes["users"],
        items=sizes["items"],
        events=sizes["events"],
        seed=args.seed,
        min_user_interactions=args.min_user_interactions,
        min_item_interactions=args.min_item_interactions,
        repeats=args.repeats,
        workdir=args.workdir.resolve(),
        results=args.results.resolve(),
        quick=args.quick,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.run_path is not None:
        if args.log is None or args.out is None:
            parser.error("--run-path needs --log and --out")
        result = run_path(
            args.run_path,
            args.log,
            args.out,
            args.min_user_interactions,
            args.min_item_interactions,
        )
        print(json.dumps(result), flush=True)
        return 0
    config = parse_args(parser, argv)
    command = shlex.join([".venv/bin/python", "bench/prepare.py", *argv])
    return run_benchmark(config, command)


if __name__ == "__main__":
    raise SystemExit(main())
