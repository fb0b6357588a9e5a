"""What each lever of the recommended recipe buys: variants trained side by side, measured on
validation (what selects) and test (what we report), under full ranking.

    .venv/bin/python bench/recipe_levers.py                         # every variant on Toys
    .venv/bin/python bench/recipe_levers.py --dataset video_games --variant base --variant ce
    .venv/bin/python bench/recipe_levers.py --list                  # the variants

Every variant is the recipe's model and schedule with a fixed epoch count (so variants compare
at equal training, whatever the machine's speed; the time budget is off) plus a few overrides,
trained in its own process with one thread (``--jobs`` at once). Its best checkpoint by
validation NDCG@10 is evaluated on the validation and test splits (full ranking; on Video Games
also the paper's sampled protocol). Results accumulate in ``recipe_levers.json`` (a variant run
again replaces its row) and are written as ``.md`` and ``.png``.

A difference of about 0.0015 NDCG@10 is one standard error on these data sets (the bootstrap
intervals of ``bench/quality.py``): read single rows as evidence, not proof.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
SHARED: Final = REPO_ROOT.parent / "shared" / "datasets"
STEM: Final = "recipe_levers"
EPOCHS: Final = 60

BASE: Final[dict[str, Any]] = {
    "loss": "sampled_softmax",
    "num_negatives": 4096,
    "max_epochs": EPOCHS,
    "max_minutes": None,
    "check_val_every_n_epoch": 5,
    "patience": 100,
    "accelerator": "cpu",
    "devices": 1,
}
"""The recipe on a CPU (its other settings ``auto``, resolved from the data), with a fixed number
of epochs and the softmax always sampled (the synthetic catalogue is small enough for the full
one; sampling keeps the variants comparable across data sets)."""

VARIANTS: Final[dict[str, dict[str, Any]]] = {
    "base": {},
    "negatives-512": {"num_negatives": 512},
    "negatives-2048": {"num_negatives": 2048},
    "negatives-8192": {"num_negatives": 8192},
    "ce": {"loss": "ce"},
    "popularity-negatives": {"negative_sampling": "popularity"},
    "logq-correction": {"logq_correction": True},
    "exclude-seen-negatives": {"exclude_seen_negatives": True},
    "negatives-8192-half-the-targets": {"num_negatives": 8192, "target_fraction": 0.5},
    "item-dropout-0.1": {"item_dropout": 0.1},
    "item-dropout-0.2": {"item_dropout": 0.2},
    "dropout-0.3": {"dropout": 0.3},
    "dropout-0.6": {"dropout": 0.6},
    "dropout-0.2": {"dropout": 0.2},
    "dropout-0.5": {"dropout": 0.5},
    "hidden-128": {"hidden_size": 128},
    "one-block": {"n_blocks": 1},
    "two-heads": {"n_heads": 2},
    "ffn-4": {"ffn_multiplier": 4},
    "lr-0.001": {"learning_rate": 0.001},
    "lr-0.003": {"learning_rate": 0.003},
    "lr-0.004-warmup": {"learning_rate": 0.004, "warmup_steps": 200},
    "batch-256": {"batch_size": 256},
    "batch-64": {"batch_size": 64},
    "weight-decay-0.1": {"weight_decay": 0.1},
    "float32": {"precision": "32-true"},
    "sparse-updates": {"embedding_updates": "sparse"},
    "120-epochs": {"max_epochs": 120},
}


def _child(dataset: str, variant: str, workdir: Path) -> dict[str, Any]:
    """Train and evaluate one variant (in this process; the parent runs one per process)."""
    import torch

    torch.set_num_threads(1)
    from recsys.data import load_prepared
    from recsys.evaluation import EvaluationProtocol, evaluation_task, run_evaluation
    from recsys.training import TrainConfig, checkpoint_scorer, train

    data = _prepare(dataset, workdir)
    config = TrainConfig.build({**BASE, **VARIANTS[variant]}, origin=f"variant {variant}")
    run = workdir / "runs" / f"{dataset}-{variant}"
    started = time.perf_counter()
    summary = train(data, run, config, overwrite=True, progress=False)
    wall = time.perf_counter() - started
    prepared = load_prepared(data)
    scorer = checkpoint_scorer(run / "checkpoints" / "best.ckpt", prepared)
    result: dict[str, Any] = {
        "dataset": dataset,
        "variant": variant,
        "overrides": VARIANTS[variant],
        "wall_s": round(wall, 1),
        "train_seconds_per_epoch": summary["train_seconds_per_epoch"],
        "best_epoch": summary["best_epoch"],
    }
    protocols: list[tuple[str, EvaluationProtocol]] = [("validation", "full"), ("test", "full")]
    if dataset == "video_games":
        protocols.append(("test", "sampled"))
    for split, protocol in protocols:
        task = evaluation_task(prepared, split, protocol, (10,), 100, "uniform", 0)
        means = run_evaluation(task, scorer).means
        result[f"{split}_{protocol}"] = {k: round(means[k], 4) for k in ("hr@10", "ndcg@10")}
    return result


SYNTHETIC: Final = {"n_users": 20_000, "n_items": 3_000, "n_events": 300_000, "seed": 0}
"""The synthetic log of ``bench/quality.py``: items are not rare there (100 events each)."""


def _prepare(dataset: str, workdir: Path) -> Path:
    from recsys.data import prepare_dataset, write_prepared
    from recsys.data.synthetic import SynthConfig, generate_log

    data = workdir / "data" / dataset
    if not (data / "stats.json").is_file():
        source: Any = SHARED / f"{dataset}.txt"
        if dataset == "synthetic":
            source = generate_log(SynthConfig(**SYNTHETIC))
        write_prepared(prepare_dataset(source), data, overwrite=True)
    return data


def _launch(dataset: str, variant: str, workdir: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "bench.recipe_levers", "--child", variant]
    command += ["--dataset", dataset, "--workdir", str(workdir)]
    print(f"[levers] {dataset}/{variant}: training", file=sys.stderr, flush=True)
    return subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


def run_all(dataset: str, variants: list[str], workdir: Path, jobs: int) -> list[dict[str, Any]]:
    """Every variant, ``jobs`` processes at a time."""
    pending = list(variants)
    running: list[tuple[str, subprocess.Popen[str]]] = []
    results: list[dict[str, Any]] = []
    _prepare(dataset, workdir)  # once, before the children race for it
    while pending or running:
        while pending and len(running) < jobs:
            variant = pending.pop(0)
            running.append((variant, _launch(dataset, variant, workdir)))
        time.sleep(5)
        for variant, process in list(running):
            if process.poll() is None:
                continue
            running.remove((variant, process))
            output = (process.stdout.read() if process.stdout else "").strip().splitlines()
            if process.returncode != 0 or not output:
                print(f"[levers] {variant} failed ({process.returncode})", file=sys.stderr)
                continue
            results.append(json.loads(output[-1]))
            print(f"[levers] {dataset}/{variant}: {results[-1]}", file=sys.stderr, flush=True)
    return results


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# What each lever of the recipe buys",
        "",
        f"Variants of the recipe trained {EPOCHS} epochs each (the time budget off, one thread "
        "per run), best checkpoint by validation NDCG@10, full ranking. `base`: the recipe as it "
        "resolves on each data set (hidden 64, 2 blocks, max_len 50; dropout 0.5 on the Amazon "
        "logs, 0.2 on the synthetic one; sampled softmax with 4,096 uniform negatives, bf16 "
        "where the CPU has it, lr 0.002 with cosine decay). One standard error is about 0.0015 "
        "NDCG@10 on the Amazon logs.",
        "",
        "| data set | variant | overrides | val HR@10 | val NDCG@10 | test HR@10 | test NDCG@10 "
        "| test NDCG@10 vs base | sampled HR@10 / NDCG@10 | s per epoch |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    rows = sorted(report["rows"], key=lambda r: (r["dataset"], r["variant"] != "base"))
    base = {r["dataset"]: r for r in rows if r["variant"] == "base"}
    for row in rows:
        reference = base.get(row["dataset"])
        change = ""
        if reference is not None and row is not reference:
            ratio = row["test_full"]["ndcg@10"] / reference["test_full"]["ndcg@10"] - 1
            change = f"{100 * ratio:+.1f}%"
        sampled = row.get("test_sampled")
        sampled_cell = f"{sampled['hr@10']:.4f} / {sampled['ndcg@10']:.4f}" if sampled else ""
        overrides = ", ".join(f"{k}={v}" for k, v in row["overrides"].items()) or "-"
        lines.append(
            f"| {row['dataset']} | {row['variant']} | {overrides} | "
            f"{row['validation_full']['hr@10']:.4f} | {row['validation_full']['ndcg@10']:.4f} | "
            f"{row['test_full']['hr@10']:.4f} | {row['test_full']['ndcg@10']:.4f} | {change} | "
            f"{sampled_cell} | {row['train_seconds_per_epoch']} |"
        )
    lines += [
        "",
        "Seconds per epoch are from runs sharing the machine (two at a time, one thread each): "
        "compare them within this table only; `bench/train_speed.py` measures speed.",
        "",
        f"Updated {report['updated_at']}. Reproduce: `.venv/bin/python bench/recipe_levers.py "
        "--dataset NAME --variant NAME`.",
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recsys.evaluation.plots import save_figure

    datasets = sorted({r["dataset"] for r in report["rows"]})
    figure, axes = plt.subplots(len(datasets), 1, figsize=(9, 3.2 * len(datasets)), squeeze=False)
    for axis, dataset in zip(axes[:, 0], datasets, strict=True):
        rows = [r for r in report["rows"] if r["dataset"] == dataset]
        rows.sort(key=lambda r: r["test_full"]["ndcg@10"])
        names = [r["variant"] for r in rows]
        axis.barh(names, [r["test_full"]["ndcg@10"] for r in rows], color="tab:blue", label="test")
        axis.scatter(
            [r["validation_full"]["ndcg@10"] for r in rows],
            names,
            color="tab:orange",
            label="validation",
            zorder=3,
        )
        axis.set_title(f"{dataset}: NDCG@10, full ranking, {EPOCHS} epochs")
        axis.legend(loc="lower right")
    save_figure(figure, path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dataset", default="toys", choices=("toys", "video_games", "synthetic"))
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    parser.add_argument("--jobs", type=int, default=2, help="variants trained at once")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "bench" / ".work" / STEM)
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--list", action="store_true", help="print the variants and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.list:
        for name, overrides in VARIANTS.items():
            print(f"{name}: {overrides or 'the base'}")
        return
    if args.child:
        print(json.dumps(_child(args.dataset, args.child, args.workdir)))
        return
    if args.dataset != "synthetic" and not (SHARED / f"{args.dataset}.txt").is_file():
        print(f"skipped: {SHARED / args.dataset}.txt not found (../shared/datasets is absent)")
        return
    results = run_all(args.dataset, args.variant or list(VARIANTS), args.workdir, args.jobs)

    from recsys.io import atomic_write_text, write_json

    path = args.results / f"{STEM}.json"
    report: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"rows": []}
    done = {(r["dataset"], r["variant"]) for r in results}
    report["rows"] = [r for r in report["rows"] if (r["dataset"], r["variant"]) not in done]
    report["rows"] += results
    report["updated_at"] = datetime.now(UTC).isoformat()
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(path, report)
    atomic_write_text(args.results / f"{STEM}.md", markdown(report))
    plot(report, args.results / f"{STEM}.png")
    print((args.results / f"{STEM}.md").read_text())


if __name__ == "__main__":
    main()
