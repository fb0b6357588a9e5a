"""Latency of one call of an exported model: the TorchScript ``forward`` against the same module
run eagerly.

    .venv/bin/python bench/export_latency.py           # the full grid, ~2-3 minutes on 2 cores
    .venv/bin/python bench/export_latency.py --quick   # small catalogues, seconds: a smoke run

Grid: batch 1, 32, 256 x history length 50, 200 x catalogue 23,715 items (Video Games) and 1M.
Each cell times one ``forward(items, k=10, exclude=[], exclude_history=True)`` of a
random-initialised SASRec (hidden 50, 2 blocks, 1 head, ``max_len`` = the history length) on full
histories of random items: the model, the history exclusion and the top-k, as a server calls it.
Batches of more than one user are timed once more with mixed lengths, as real batches come:
lengths drawn from a geometric distribution of mean ``MIXED_MEAN_LENGTH`` (Video Games users have
9.3 on average, median 6), left-padded to the batch's longest, so the model's cost of padding
shows against the full histories of the same run.
The scripted module is saved and reloaded first, as the server loads it. Each path gets a few
warm-up calls (the TorchScript executor specialises on the first ones), then as many timed calls
as fit a per-cell time budget (at least ``MIN_REPEATS``, at most ``MAX_REPEATS``), the two paths
alternating call by call so that background load hits both alike; the median and
the 95th percentile are reported, with eager / scripted as the speed-up. Writes
``export_latency.{json,md,png}`` to ``--results``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
WORK: Final = REPO_ROOT / "bench" / ".work"
CATALOGUES: Final = (23_715, 1_000_000)
SEQ_LENS: Final = (50, 200)
BATCHES: Final = (1, 32, 256)
FULL: Final = {"catalogues": CATALOGUES, "seq_lens": SEQ_LENS, "batches": BATCHES}
QUICK: Final = {"catalogues": (1_000, 20_000), "seq_lens": (50,), "batches": (1, 32)}
K: Final = 10
MIXED_MEAN_LENGTH: Final = 9.0
WARMUP: Final = 5
"""The TorchScript profiling executor profiles the first calls, then runs an optimised graph:
up to this many warm-up calls, at least ``MIN_WARMUP``, within ``WARMUP_BUDGET_S``."""
MIN_WARMUP: Final = 2
WARMUP_BUDGET_S: Final = 1.0
MIN_REPEATS: Final = 5
MAX_REPEATS: Final = 200
BUDGET_S: Final = 2.0
"""Timed seconds per path and cell (beyond the minimum repeats)."""


def _model(num_items: int, seq_len: int) -> torch.nn.Module:
    from recsys.export import RecommenderModule
    from recsys.models import SASRec, SASRecConfig

    torch.manual_seed(0)
    config = SASRecConfig(num_items=num_items, max_len=seq_len, hidden_size=50, n_blocks=2)
    return RecommenderModule(SASRec(config)).eval()


def _scripted(module: torch.nn.Module, path: Path) -> torch.jit.ScriptModule:
    """Script, save and reload: what the server runs."""
    from recsys.export.artifact import quiet_jit

    with quiet_jit():
        torch.jit.save(torch.jit.script(module), str(path))
        loaded = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    path.unlink()
    return loaded.eval()


def _call_seconds(call: Any, items: torch.Tensor, exclude: torch.Tensor) -> float:
    started = time.perf_counter()
    call(items, K, exclude, True)
    return time.perf_counter() - started


def _time_pair(
    scripted: Any, eager: Any, items: torch.Tensor, exclude: torch.Tensor
) -> tuple[list[float], list[float]]:
    """Seconds per call of each path, after the warm-up. The paths alternate call by call, so
    that load from other processes on the shared machine falls on both alike."""
    with torch.inference_mode():
        warmed, warm_s = 0, 0.0
        while warmed < MIN_WARMUP or (warmed < WARMUP and warm_s < WARMUP_BUDGET_S):
            warm_s += _call_seconds(scripted, items, exclude)
            warm_s += _call_seconds(eager, items, exclude)
            warmed += 1
        scripted_s: list[float] = []
        eager_s: list[float] = []
        spent = 0.0
        while len(scripted_s) < MIN_REPEATS or (
            spent < 2 * BUDGET_S and len(scripted_s) < MAX_REPEATS
        ):
            scripted_s.append(_call_seconds(scripted, items, exclude))
            eager_s.append(_call_seconds(eager, items, exclude))
            spent += scripted_s[-1] + eager_s[-1]
    return scripted_s, eager_s


def _summary(seconds: list[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1000.0
    return {
        "median_ms": round(float(np.median(values)), 3),
        "p95_ms": round(float(np.percentile(values, 95)), 3),
        "repeats": len(seconds),
    }


Grid = dict[str, tuple[int, ...]]


def measure(grid: Grid) -> list[dict[str, Any]]:
    """Every cell of the grid: both paths on the same inputs."""
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for num_items in grid["catalogues"]:
        for seq_len in grid["seq_lens"]:
            eager = _model(num_items, seq_len)
            scripted = _scripted(eager, WORK / f"latency-{os.getpid()}.ts")
            generator = torch.Generator().manual_seed(1)
            cells = [(batch, False) for batch in grid["batches"]]
            cells += [(batch, True) for batch in grid["batches"] if batch > 1]
            for batch, mixed in cells:
                items = torch.randint(1, num_items + 1, (batch, seq_len), generator=generator)
                if mixed:
                    items = _mixed_lengths(items, generator)
                exclude = torch.zeros(batch, 0, dtype=torch.long)
                with torch.inference_mode():  # same answer from both paths, or nothing to time
                    same = torch.equal(
                        scripted(items, K, exclude, True)[0], eager(items, K, exclude, True)[0]
                    )
                scripted_s, eager_s = _time_pair(scripted, eager, items, exclude)
                script_stats, eager_stats = _summary(scripted_s), _summary(eager_s)
                row = {
                    "catalogue": num_items,
                    "seq_len": seq_len,
                    "batch": batch,
                    "histories": "mixed" if mixed else "full",
                    "mean_length": round(float((items != 0).sum()) / batch, 1),
                    "scripted": script_stats,
                    "eager": eager_stats,
                    "eager_over_scripted": round(
                        eager_stats["median_ms"] / script_stats["median_ms"], 3
                    ),
                    "scripted_ms_per_user": round(script_stats["median_ms"] / batch, 4),
                    "same_top_k": same,
                }
                rows.append(row)
                print(
                    f"catalogue {num_items:>9,} L {seq_len:>3} batch {batch:>3} "
                    f"{row['histories']:>5}: scripted "
                    f"{script_stats['median_ms']:8.2f} ms (p95 {script_stats['p95_ms']:8.2f}), "
                    f"eager {eager_stats['median_ms']:8.2f} ms",
                    flush=True,
                )
            del eager, scripted
    return rows


def _mixed_lengths(items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Keep a geometric number of each row's items (mean ``MIXED_MEAN_LENGTH``, at least one,
    at most the row), left-padded with 0 and trimmed to the longest row, as a server batches."""
    batch, width = items.shape
    uniform = torch.rand(batch, generator=generator)
    lengths = torch.ceil(torch.log1p(-uniform) / np.log1p(-1.0 / MIXED_MEAN_LENGTH))
    lengths = lengths.clamp(1, width).long()  # [B]
    columns = torch.arange(width).unsqueeze(0)  # [1, L]
    padded = items.masked_fill(columns < (width - lengths).unsqueeze(1), 0)
    return padded[:, width - int(lengths.max()) :]


def _findings(rows: list[dict[str, Any]]) -> list[str]:
    """What the numbers say, computed from them (so the text never drifts from the table)."""
    ratios = [row["eager_over_scripted"] for row in rows]
    lines = [
        f"- Scripted vs eager: the eager module takes {statistics.median(ratios):.2f}x the "
        f"scripted time at the median cell (range {min(ratios):.2f}x-{max(ratios):.2f}x); "
        f"identical top-{K} in {sum(r['same_top_k'] for r in rows)} of {len(rows)} cells."
    ]
    for row in rows:
        if row["batch"] == 1 and row["seq_len"] == min(r["seq_len"] for r in rows):
            lines.append(
                f"- One user, catalogue {row['catalogue']:,}, L {row['seq_len']}: "
                f"{row['scripted']['median_ms']:.2f} ms median, {row['scripted']['p95_ms']:.2f} "
                "ms p95."
            )
    full = {(r["catalogue"], r["seq_len"], r["batch"]): r for r in rows if r["histories"] == "full"}
    for row in rows:
        if row["histories"] == "mixed":
            same = full[(row["catalogue"], row["seq_len"], row["batch"])]
            share = row["scripted"]["median_ms"] / same["scripted"]["median_ms"]
            lines.append(
                f"- Mixed lengths, catalogue {row['catalogue']:,}, L {row['seq_len']}, batch "
                f"{row['batch']} (mean {row['mean_length']} items): {share:.0%} of the full "
                "histories' time."
            )
    largest = full[max(full)]  # the largest catalogue, history and batch
    lines.append(
        f"- Largest cell (catalogue {largest['catalogue']:,}, L {largest['seq_len']}, batch "
        f"{largest['batch']}): {largest['scripted']['median_ms']:.0f} ms per call, "
        f"{largest['scripted_ms_per_user']:.2f} ms per user."
    )
    return lines


def _write(report: dict[str, Any], results: Path, stem: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recsys.io import atomic_write_text, write_json

    results.mkdir(parents=True, exist_ok=True)
    write_json(results / f"{stem}.json", report)
    machine = report["machine"]
    lines = [
        "# Exported model latency: one TorchScript forward (top-10, history excluded)",
        "",
        f"Random-initialised SASRec (hidden 50, 2 blocks, 1 head, max_len = history length), "
        f"full histories of random items (and, for batches, mixed lengths of mean "
        f"{MIXED_MEAN_LENGTH:g} left-padded to the batch's longest), k = {K}, `exclude_history` "
        "on; the scripted module "
        f"saved and reloaded as the server loads it. {MIN_WARMUP}-{WARMUP} warm-up calls "
        f"(within {WARMUP_BUDGET_S:g} s), then at least "
        f"{MIN_REPEATS} timed calls and up to {BUDGET_S:g} s per path and cell, the two paths "
        "alternating call by call. Eager = the same module without TorchScript. CPU, "
        f"{machine['torch_threads']} torch thread(s); load average before the run "
        f"{machine['load_before']}, after {machine['load_after']} (the 2-core machine is shared, "
        "so other processes add noise, mostly to the p95).",
        "",
        "| catalogue | history L | batch | histories (mean length) | scripted median (ms) | "
        "scripted p95 (ms) | per user (ms) | eager median (ms) | eager / scripted | repeats |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['catalogue']:,} | {row['seq_len']} | {row['batch']} | "
            f"{row['histories']} ({row['mean_length']:g}) | "
            f"{row['scripted']['median_ms']:.2f} | {row['scripted']['p95_ms']:.2f} | "
            f"{row['scripted_ms_per_user']:.3f} | {row['eager']['median_ms']:.2f} | "
            f"{row['eager_over_scripted']:.2f}x | {row['scripted']['repeats']} |"
        )
    command = ".venv/bin/python bench/export_latency.py" + (" --quick" if report["quick"] else "")
    lines += [
        "",
        *_findings(report["rows"]),
        "",
        f"Machine: {machine['platform']}, {machine['cpus']} CPUs, torch {machine['torch']}. "
        f"Run {report['created_at']}, {report['wall_s']:.0f} s in all.",
        "",
        f"Reproduce: `{command}`",
    ]
    atomic_write_text(results / f"{stem}.md", "\n".join(lines) + "\n")

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    catalogues = sorted({row["catalogue"] for row in report["rows"]})
    for axis, num_items in zip(axes, catalogues, strict=False):
        for seq_len in sorted({row["seq_len"] for row in report["rows"]}):
            cells = [
                r
                for r in report["rows"]
                if r["catalogue"] == num_items
                and r["seq_len"] == seq_len
                and r["histories"] == "full"
            ]
            batches = [r["batch"] for r in cells]
            line = axis.plot(
                batches, [r["scripted"]["median_ms"] for r in cells], marker="o",
                label=f"scripted, L={seq_len}",
            )  # fmt: skip
            axis.plot(
                batches, [r["eager"]["median_ms"] for r in cells], marker="x", linestyle="--",
                color=line[0].get_color(), label=f"eager, L={seq_len}",
            )  # fmt: skip
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("batch size (users per call)")
        axis.set_title(f"catalogue {num_items:,} items")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    axes[0].set_ylabel("median latency per call (ms)")
    figure.suptitle(f"SASRec top-{K} forward, TorchScript vs eager (CPU)")
    figure.tight_layout()
    staging = results / f".{stem}.tmp.png"
    figure.savefig(staging, dpi=110)
    staging.replace(results / f"{stem}.png")
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small catalogues, a smoke run")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1: one request per core, as a server worker runs; more "
        "threads on a busy 2-core machine spin-wait and inflate every number)",
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, args.threads))
    load_before = [round(x, 2) for x in os.getloadavg()]
    grid: Grid = dict(QUICK if args.quick else FULL)
    torch.set_flush_denormal(True)
    started = time.perf_counter()
    rows = measure(grid)
    report = {
        "created_at": datetime.now(UTC).isoformat(),
        "quick": args.quick,
        "k": K,
        "warmup": WARMUP,
        "min_repeats": MIN_REPEATS,
        "budget_s_per_cell": BUDGET_S,
        "model": {"hidden_size": 50, "n_blocks": 2, "n_heads": 1, "max_len": "history length"},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_before": load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()],
        },
        "rows": rows,
        "median_speedup": round(statistics.median(r["eager_over_scripted"] for r in rows), 3),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    stem = "export_latency-quick" if args.quick else "export_latency"
    _write(report, args.results, stem)
    print((args.results / f"{stem}.md").read_text())


if __name__ == "__main__":
    main()
