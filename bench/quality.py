"""Quality of the recommended recipe: the same default command on every data set, under full
ranking, beside most-popular, Markov and the published numbers.

    .venv/bin/python bench/quality.py                      # every data set (about 50 minutes)
    .venv/bin/python bench/quality.py --dataset toys       # one; the others' results are kept
    .venv/bin/python bench/quality.py --reuse              # evaluate existing runs again

For each data set: ``recsys prepare`` (leave-one-out, no filtering: the published splits),
``recsys train --data D --out R`` exactly as a user runs it (no config: the recipe, its 15-minute
budget, checkpoint selected on validation), then the test split ranked under full ranking (every
item the user has not interacted with) for the model, most-popular and a first-order Markov chain,
with 95% bootstrap intervals and the paired difference to Markov; on Video Games also the SASRec
paper's sampled protocol (100 uniform negatives) from the same checkpoint. The data sets:
``../shared/datasets/video_games.txt`` and ``toys.txt`` (skipped with a message where absent) and
a synthetic log from ``recsys synth``.

Writes ``quality.json``, ``quality.md`` and ``quality.png`` to ``--results``; the targets (issue
[F]) are checked in the report.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
SHARED: Final = REPO_ROOT.parent / "shared" / "datasets"
STEM: Final = "quality"
MARKOV_FACTOR: Final = 1.3


@dataclass(frozen=True)
class Anchor:
    """A published number to stand beside ours (always say which protocol)."""

    name: str
    protocol: str
    hr10: float
    ndcg10: float


@dataclass(frozen=True)
class Source:
    """A data set: where it comes from, what we must reach on it, what others published."""

    name: str
    title: str
    file: Path | None = None
    synth: dict[str, int] | None = None
    """``recsys synth`` settings (users, items, events, seed) for a synthetic source."""
    targets: dict[str, tuple[float, float]] = field(default_factory=dict)
    """protocol -> (HR@10, NDCG@10) the test split must reach."""
    anchors: tuple[Anchor, ...] = ()

    @property
    def sampled(self) -> bool:
        return "sampled" in self.targets


SOURCES: Final = {
    source.name: source
    for source in (
        Source(
            "video_games",
            "Amazon Video Games (the SASRec paper's data)",
            file=SHARED / "video_games.txt",
            targets={"full": (0.120, 0.066), "sampled": (0.7410, 0.5360)},
            anchors=(
                Anchor("SASRec paper (Kang & McAuley 2018)", "sampled", 0.7410, 0.5360),
                Anchor("our CE config, 100 GPU epochs (earlier run)", "full", 0.1151, 0.0636),
            ),
        ),
        Source(
            "toys",
            "Amazon Toys and Games (the S3-Rec split)",
            file=SHARED / "toys.txt",
            targets={"full": (0.105, 0.063)},
            anchors=(
                Anchor("RecTools SASRec + sampled softmax (eSASRec paper)", "full", 0.0970, 0.0580),
                Anchor("eSASRec (eSASRec paper)", "full", 0.0939, 0.0538),
                Anchor("HSTU (eSASRec paper)", "full", 0.0778, 0.0450),
                Anchor("S3-Rec (reported)", "full", 0.0700, 0.0376),
            ),
        ),
        Source(
            "synthetic",
            "Synthetic log (`recsys synth`, 20k users, 3k items, 300k events)",
            synth={"users": 20_000, "items": 3_000, "events": 300_000, "seed": 0},
        ),
    )
}


def _log(message: str) -> None:
    print(f"[quality] {message}", file=sys.stderr, flush=True)


def _recsys(*args: str) -> None:
    """Run a ``recsys`` command as a user would (its progress goes to this terminal)."""
    command = [sys.executable, "-m", "pipelines.cli", *args]
    done = subprocess.run(command, cwd=REPO_ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"`recsys {' '.join(args)}` failed with status {done.returncode}")


def _prepare(source: Source, workdir: Path) -> Path:
    data = workdir / source.name / "data"
    if (data / "stats.json").is_file():
        return data
    log_path = source.file
    if log_path is None:
        log_path = workdir / source.name / "log.parquet"
        flags = [f"--{key}={value}" for key, value in (source.synth or {}).items()]
        _recsys("synth", "--out", str(log_path), "--overwrite", *flags)
    _log(f"preparing {log_path}")
    _recsys("prepare", "--input", str(log_path), "--out", str(data), "--overwrite")
    return data


def _evaluate(source: Source, data: Path, checkpoint: Path) -> dict[str, Any]:
    from recsys.data import load_prepared
    from recsys.evaluation import (
        Scorer,
        build_report,
        evaluation_task,
        markov_scorer,
        most_popular_scorer,
        report_payload,
        run_evaluation,
    )
    from recsys.training import checkpoint_scorer

    dataset = load_prepared(data)
    scorers: list[Scorer] = [
        checkpoint_scorer(checkpoint, dataset),
        markov_scorer(dataset),
        most_popular_scorer(dataset),
    ]
    payloads = {}
    for protocol in ("full", "sampled") if source.sampled else ("full",):
        _log(f"{source.name}: evaluating the test split ({protocol} ranking)")
        task = evaluation_task(dataset, "test", protocol, (10, 20), 100, "uniform", 0)
        results = [run_evaluation(task, scorer) for scorer in scorers]
        payloads[protocol] = report_payload(build_report(results, 1000, 0.95, 0))
    evaluation = {
        "num_users": dataset.num_users,
        "num_items": dataset.num_items,
        "num_interactions": dataset.stats["num_interactions"],
        "protocols": payloads,
    }
    if source.synth is not None:
        evaluation["truth"] = _truth_metrics(source, dataset)
    return evaluation


def _truth_metrics(source: Source, dataset: Any) -> dict[str, float]:
    """Full-ranking HR@10 / NDCG@10 of the generator's own next-item distribution on the test
    split: the ceiling on a synthetic log (no model can rank better in expectation)."""
    import numpy as np
    import torch

    from recsys.data import evaluation_batch, held_out_targets
    from recsys.data.synthetic import NextItemTruth, SynthConfig
    from recsys.evaluation import full_ranking, hit_rate_at_k, ndcg_at_k

    settings = source.synth or {}
    truth = NextItemTruth.of(
        SynthConfig(
            n_users=settings["users"],
            n_items=settings["items"],
            n_events=settings["events"],
            seed=settings["seed"],
        )
    )
    held_out = held_out_targets(dataset, "test")
    user_ids = dataset.users.table.sort(dataset.users.index_col).get_column(dataset.users.id_col)
    item_ids = dataset.items.table.sort(dataset.items.index_col).get_column(dataset.items.id_col)
    user_id_of = np.concatenate([[0], user_ids.cast(int).to_numpy()])  # by user_idx
    item_id_of = np.concatenate([[0], item_ids.cast(int).to_numpy()])  # by item_idx
    ranks = []
    for start in range(0, len(held_out.targets), 1000):
        rows = list(range(start, min(start + 1000, len(held_out.targets))))
        _, targets, seen = evaluation_batch(held_out, rows, 1)
        newest = np.array([held_out.histories.row(r)[-1] for r in rows])
        probabilities = truth.probabilities(
            user_id_of[held_out.user_indices[rows]], item_id_of[newest]
        )
        scores = torch.from_numpy(probabilities[:, item_id_of]).float()  # by item_idx
        scores[:, 0] = float("-inf")
        batch_ranks, _ = full_ranking(scores, seen, targets, 10)
        ranks.append(batch_ranks)
    all_ranks = torch.cat(ranks)
    return {
        "hr@10": float(hit_rate_at_k(all_ranks, 10).mean()),
        "ndcg@10": float(ndcg_at_k(all_ranks, 10).mean()),
    }


def _checks(source: Source, evaluation: dict[str, Any]) -> dict[str, bool]:
    """Each target of the issue: the model's mean against the bar, Markov's ratio and CI."""
    checks: dict[str, bool] = {}
    for protocol, (hr_bar, ndcg_bar) in source.targets.items():
        metrics = evaluation["protocols"][protocol]["scorers"]["sasrec"]["metrics"]
        checks[f"{protocol} HR@10 >= {hr_bar}"] = metrics["hr@10"]["mean"] >= hr_bar
        checks[f"{protocol} NDCG@10 >= {ndcg_bar}"] = metrics["ndcg@10"]["mean"] >= ndcg_bar
    full = evaluation["protocols"]["full"]
    ndcg = {name: s["metrics"]["ndcg@10"]["mean"] for name, s in full["scorers"].items()}
    checks[f"full NDCG@10 >= {MARKOV_FACTOR}x Markov"] = (
        ndcg["sasrec"] >= MARKOV_FACTOR * ndcg["markov"]
    )
    versus_markov = next(c for c in full["comparisons"] if c["other"] == "markov")
    checks["paired NDCG@10 difference to Markov > 0 (95% CI)"] = (
        versus_markov["differences"]["ndcg@10"]["ci_low"] > 0
    )
    return checks


def run_source(source: Source, workdir: Path, reuse: bool) -> dict[str, Any]:
    data = _prepare(source, workdir)
    run = workdir / source.name / "run"
    if not (reuse and (run / "summary.json").is_file()):
        _log(f"{source.name}: training with the default command")
        _recsys("train", "--data", str(data), "--out", str(run), "--overwrite")
    summary = json.loads((run / "summary.json").read_text())
    evaluation = _evaluate(source, data, run / "checkpoints" / "best.ckpt")
    return {
        "title": source.title,
        "command": f"recsys train --data {data.name} --out {run.name}",
        "training": {key: summary.get(key) for key in _SUMMARY_KEYS},
        "evaluation": evaluation,
        "targets": source.targets,
        "anchors": [anchor.__dict__ for anchor in source.anchors],
        "checks": _checks(source, evaluation),
    }


_SUMMARY_KEYS: Final = (
    "best_epoch",
    "best_validation",
    "epochs_trained",
    "stopped_by",
    "wall_time_s",
    "train_seconds_per_epoch",
    "device",
    "precision",
    "recipe",
    "config",
)


def _cell(metric: dict[str, float]) -> str:
    return f"{metric['mean']:.4f} [{metric['ci_low']:.4f}, {metric['ci_high']:.4f}]"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Quality of the recommended recipe",
        "",
        "The same command on every data set: `recsys train --data D --out R` (no config: the "
        "recommended recipe, derived from the data, 15 minutes on this machine, best checkpoint "
        "by full-ranking validation NDCG@10). Test split, leave-one-out (history = training + "
        "validation items). **Full ranking**: the held-out item against every item the user has "
        "not interacted with. Means over users with 95% bootstrap intervals (1000 resamples). "
        "Full-ranking and sampled numbers are not comparable with each other.",
        "",
        f"Machine: {report['machine']}. Run {report['created_at']}.",
        "",
        "## Summary (full ranking, test split)",
        "",
        "| data set | SASRec HR@10 | SASRec NDCG@10 | Markov NDCG@10 | x Markov | "
        "most-popular NDCG@10 | targets met |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, entry in report["datasets"].items():
        scorers = entry["evaluation"]["protocols"]["full"]["scorers"]
        model, markov = scorers["sasrec"]["metrics"], scorers["markov"]["metrics"]
        popular = scorers["most-popular"]["metrics"]
        ratio = model["ndcg@10"]["mean"] / max(markov["ndcg@10"]["mean"], 1e-12)
        met = sum(entry["checks"].values())
        lines.append(
            f"| {name} | {_cell(model['hr@10'])} | {_cell(model['ndcg@10'])} | "
            f"{markov['ndcg@10']['mean']:.4f} | {ratio:.2f}x | {popular['ndcg@10']['mean']:.4f} "
            f"| {met}/{len(entry['checks'])} |"
        )
    for name, entry in report["datasets"].items():
        lines += _dataset_section(name, entry)
    lines += [
        "",
        "## Reproduce",
        "",
        "```",
        ".venv/bin/python bench/quality.py [--dataset NAME]",
        "# by hand, per data set:",
        "recsys prepare --input ../shared/datasets/toys.txt --out runs/toys",
        "recsys train --data runs/toys --out runs/toys-run",
        "recsys evaluate --data runs/toys --checkpoint runs/toys-run/checkpoints/best.ckpt "
        "--compare-baselines --k 10,20 --out runs/toys-report",
        "```",
    ]
    return "\n".join(lines) + "\n"


def _dataset_section(name: str, entry: dict[str, Any]) -> list[str]:
    evaluation, training = entry["evaluation"], entry["training"]
    lines = [
        "",
        f"## {entry['title']}",
        "",
        f"{evaluation['num_users']:,} users, {evaluation['num_items']:,} items, "
        f"{evaluation['num_interactions']:,} interactions. Trained {training['epochs_trained']} "
        f"epochs in {training['wall_time_s']:.0f} s ({training['train_seconds_per_epoch']} s "
        f"per training epoch, {training['device']}); best epoch {training['best_epoch']} by "
        "validation NDCG@10 (full ranking).",
        "",
        "| protocol | scorer | HR@10 | NDCG@10 | HR@20 | NDCG@20 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for protocol, payload in evaluation["protocols"].items():
        for scorer, values in payload["scorers"].items():
            metrics = values["metrics"]
            lines.append(
                f"| {protocol} | {scorer} | {_cell(metrics['hr@10'])} | "
                f"{_cell(metrics['ndcg@10'])} | {_cell(metrics['hr@20'])} | "
                f"{_cell(metrics['ndcg@20'])} |"
            )
    for anchor in entry["anchors"]:
        lines.append(
            f"| {anchor['protocol']} | {anchor['name']} (published) | {anchor['hr10']:.4f} | "
            f"{anchor['ndcg10']:.4f} | | |"
        )
    truth = evaluation.get("truth")
    if truth:
        lines.append(
            f"| full | the generator's own distribution (the ceiling) | {truth['hr@10']:.4f} | "
            f"{truth['ndcg@10']:.4f} | | |"
        )
    full = evaluation["protocols"]["full"]
    versus = next(c for c in full["comparisons"] if c["other"] == "markov")["differences"]
    lines += [
        "",
        f"Paired difference to Markov (full ranking): NDCG@10 {_cell(versus['ndcg@10'])}, "
        f"HR@10 {_cell(versus['hr@10'])}.",
        "",
        "| target | met |",
        "|---|---|",
    ]
    lines += [f"| {check} | {'yes' if ok else '**no**'} |" for check, ok in entry["checks"].items()]
    recipe = training.get("recipe") or []
    if recipe:
        lines += ["", "Derived by the recipe:", ""]
        lines += [f"- `{c['key']}` = {c['value']}: {c['rule']}" for c in recipe]
    return lines


def plot(report: dict[str, Any], path: Path) -> None:
    """NDCG@10 per data set: the model, the baselines and the published full-ranking numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recsys.evaluation.plots import save_figure

    names = list(report["datasets"])
    figure, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        entry = report["datasets"][name]
        scorers = entry["evaluation"]["protocols"]["full"]["scorers"]
        labels, values, errors, colours = [], [], [], []
        for scorer, colour in (("sasrec", "tab:blue"), ("markov", "tab:orange")):
            metric = scorers[scorer]["metrics"]["ndcg@10"]
            labels.append(scorer)
            values.append(metric["mean"])
            errors.append([metric["mean"] - metric["ci_low"], metric["ci_high"] - metric["mean"]])
            colours.append(colour)
        popular = scorers["most-popular"]["metrics"]["ndcg@10"]
        labels.append("most-popular")
        values.append(popular["mean"])
        errors.append([popular["mean"] - popular["ci_low"], popular["ci_high"] - popular["mean"]])
        colours.append("tab:gray")
        for anchor in entry["anchors"]:
            if anchor["protocol"] == "full":
                labels.append(anchor["name"].split(" (")[0])
                values.append(anchor["ndcg10"])
                errors.append([0.0, 0.0])
                colours.append("tab:green")
        positions = range(len(labels))
        axis.bar(positions, values, yerr=list(zip(*errors, strict=True)), color=colours)
        target = entry["targets"].get("full")
        if target:
            axis.axhline(target[1], color="tab:red", linestyle="--", label="target")
            axis.legend(loc="upper right")
        axis.set_xticks(list(positions), labels, rotation=30, ha="right", fontsize=8)
        axis.set_title(f"{name}: NDCG@10, full ranking")
    save_figure(figure, path, dpi=120)


def _machine() -> str:
    import os
    import platform

    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} GPU"
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(SOURCES), action="append")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "bench" / ".work" / STEM)
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--reuse", action="store_true", help="evaluate existing runs again")
    args = parser.parse_args()

    from recsys.io import atomic_write_text, write_json

    previous = args.results / f"{STEM}.json"
    report: dict[str, Any] = {"datasets": {}}
    if previous.is_file():
        report = json.loads(previous.read_text())  # the data sets not run now are kept
    for name in args.dataset or list(SOURCES):
        source = SOURCES[name]
        if source.file is not None and not source.file.is_file():
            _log(f"skipped {name}: {source.file} not found (../shared/datasets is absent)")
            continue
        report["datasets"][name] = run_source(source, args.workdir, args.reuse)
    if not report["datasets"]:
        _log("nothing to report")
        return
    report["created_at"] = datetime.now(UTC).isoformat()
    report["machine"] = _machine()
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / f"{STEM}.json", report)
    atomic_write_text(args.results / f"{STEM}.md", markdown(report))
    plot(report, args.results / f"{STEM}.png")
    print((args.results / f"{STEM}.md").read_text())


if __name__ == "__main__":
    main()
