"""How a training step's cost grows with the catalogue: dense AdamW over the whole item table
against sparse rows updated alone (``embedding_updates``), at 10k to 1M items.

    .venv/bin/python bench/train_scaling.py            # 10k, 100k, 300k, 1M items
    .venv/bin/python bench/train_scaling.py --quick    # 10k and 100k, a few steps: a smoke run

Every cell trains the recipe's model (hidden 64, 2 blocks, max_len 50, sampled softmax with
4,096 uniform negatives, bf16 where the CPU computes in it, clipping, cosine-free constant rate)
on the same random batches of 128 users with histories of 1 to 50 items, through the project's
``SASRecModule`` (its ``training_step``, clipping and optimiser), for ``--steps`` steps after
warm-up; the median step is reported. Cells at one size run back to back, so the sparse/dense
ratio at a size is measured in the same minute. Target (issue [G]): the sparse step at 1M items
costs at most ~1.2x (log 1M / log 100k) the step at 100k. Writes ``train_scaling.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
STEM: Final = "train_scaling"
SIZES: Final = (10_000, 100_000, 300_000, 1_000_000)
QUICK_SIZES: Final = (10_000, 100_000)
MODES: Final = ("dense", "sparse")
BATCH: Final = 128
MAX_LEN: Final = 50
TARGET_GROWTH: Final = 1.2
"""Sparse step at 1M items over the step at 100k: log(1M) / log(100k)."""


def _batches(num_items: int, count: int) -> list[tuple[Any, Any]]:
    """``count`` seeded batches: right-aligned histories of 1..MAX_LEN items, next-item targets."""
    import torch

    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        lengths = torch.randint(2, MAX_LEN + 2, (BATCH,), generator=generator)
        sequence = torch.randint(1, num_items + 1, (BATCH, MAX_LEN + 1), generator=generator)
        keep = torch.arange(MAX_LEN + 1).unsqueeze(0) >= (MAX_LEN + 1 - lengths).unsqueeze(1)
        sequence = sequence * keep
        batches.append((sequence[:, :-1].contiguous(), sequence[:, 1:].contiguous()))
    return batches


def measure(num_items: int, mode: str, steps: int) -> dict[str, Any]:
    """Median seconds per training step of one cell."""
    import torch

    from recsys.training import SASRecModule, TrainConfig
    from recsys.training.recipe import auto_precision

    precision, _ = auto_precision(on_gpu=False)
    config = TrainConfig.build(
        {
            "max_len": MAX_LEN,
            "hidden_size": 64,
            "dropout": 0.5,
            "loss": "sampled_softmax",
            "num_negatives": 4096,
            "embedding_updates": mode,
            "scheduler": "none",
            "precision": precision,
            "accelerator": "cpu",
        }
    )
    torch.manual_seed(0)
    backbone = config.model_config_for(num_items)
    module = SASRecModule(backbone.to_dict(), config.model_dump(mode="json"))
    optimizer = module.configure_optimizers()
    bf16 = precision == "bf16-mixed"
    warmup = 3
    durations = []
    for index, batch in enumerate(_batches(num_items, warmup + steps)):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss: torch.Tensor = module.training_step(batch, index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        module.on_before_optimizer_step(optimizer)
        optimizer.step()
        if index >= warmup:
            durations.append(time.perf_counter() - started)
    return {
        "num_items": num_items,
        "mode": mode,
        "precision": precision,
        "steps": steps,
        "seconds_per_step": round(statistics.median(durations), 5),
    }


def markdown(report: dict[str, Any]) -> str:
    rows = {(r["num_items"], r["mode"]): r["seconds_per_step"] for r in report["rows"]}
    sizes = sorted({r["num_items"] for r in report["rows"]})
    lines = [
        "# Training step cost against catalogue size",
        "",
        "The recipe's model and loss (hidden 64, 2 blocks, max_len 50, sampled softmax with "
        f"4,096 negatives, {report['rows'][0]['precision']}) on the same random batches of "
        f"{BATCH} users; median of {report['rows'][0]['steps']} steps after warm-up. `dense`: "
        "AdamW over the whole item table every step; `sparse`: only the rows a step read get a "
        "gradient and an Adam update (`embedding_updates: sparse`, the recipe's choice on a "
        "CPU above 200,000 items).",
        "",
        "| items | dense ms/step | sparse ms/step | sparse / dense | sparse vs 100k sparse |",
        "|---:|---:|---:|---:|---:|",
    ]
    base = rows.get((100_000, "sparse"))
    for size in sizes:
        dense, sparse = rows.get((size, "dense")), rows.get((size, "sparse"))
        ratio = f"{sparse / dense:.2f}" if dense and sparse else ""
        growth = f"{sparse / base:.2f}x" if base and sparse else ""
        dense_ms = f"{dense * 1000:.1f}" if dense else ""
        sparse_ms = f"{sparse * 1000:.1f}" if sparse else ""
        lines.append(f"| {size:,} | {dense_ms} | {sparse_ms} | {ratio} | {growth} |")
    if base and (1_000_000, "sparse") in rows:
        growth = rows[(1_000_000, "sparse")] / base
        met = "met" if growth <= TARGET_GROWTH else "**not met**"
        lines += [
            "",
            f"Target: the sparse step at 1M items at most {TARGET_GROWTH}x the step at 100k "
            f"(log 1M / log 100k): {growth:.2f}x, {met}.",
        ]
    lines += [
        "",
        f"Machine: {report['machine']}. Updated {report['updated_at']}. Reproduce: "
        "`.venv/bin/python bench/train_scaling.py`.",
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recsys.evaluation.plots import save_figure

    figure, axis = plt.subplots(figsize=(6, 4))
    for mode in MODES:
        cells = sorted(
            (r["num_items"], r["seconds_per_step"] * 1000)
            for r in report["rows"]
            if r["mode"] == mode
        )
        if cells:
            axis.plot(*zip(*cells, strict=True), marker="o", label=mode)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("catalogue size (items)")
    axis.set_ylabel("ms per training step")
    axis.set_title("Training step cost against catalogue size")
    axis.legend()
    save_figure(figure, path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k items, 5 steps")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per cell")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args()
    sizes, steps = (QUICK_SIZES, 5) if args.quick else (SIZES, args.steps)

    import torch

    from recsys.io import atomic_write_text, write_json

    torch.set_flush_denormal(True)
    rows = []
    for size in sizes:
        for mode in MODES:
            rows.append(measure(size, mode, steps))
            print(json.dumps(rows[-1]), flush=True)
    report = {
        "rows": rows,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "updated_at": datetime.now(UTC).isoformat(),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / f"{STEM}.json", report)
    atomic_write_text(args.results / f"{STEM}.md", markdown(report))
    plot(report, args.results / f"{STEM}.png")
    print((args.results / f"{STEM}.md").read_text())


if __name__ == "__main__":
    main()
