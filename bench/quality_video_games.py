"""Quality on the SASRec paper's own data and protocol, with full ranking beside it.

    .venv/bin/python bench/quality_video_games.py            # prepare, train (15 min), evaluate
    .venv/bin/python bench/quality_video_games.py --run DIR  # evaluate an existing run
    .venv/bin/python bench/quality_video_games.py --config pipelines/configs/video_games_ce.yaml \
        --name quality_video_games_ce                         # full softmax (best on a GPU)

Prepares ``../shared/datasets/video_games.txt`` (leave-one-out, no filtering), trains with
``pipelines/configs/video_games.yaml`` (the paper's model setting, a 15-minute CPU budget),
then evaluates the best checkpoint on the test split under both protocols — ``sampled`` (the
paper's: 100 uniform negatives the user never interacted with) and ``full`` (every item, history
excluded) — beside the most-popular and Markov baselines, with 95% bootstrap intervals.

Writes ``<name>.json``, ``.md`` and ``_curves.png`` to ``--results`` (name: ``--name``, by default
``quality_video_games``). The bar
(ANCHORS.md): sampled HR@10 >= 0.7410 and NDCG@10 >= 0.5360 (Kang & McAuley 2018, Table III).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
VIDEO_GAMES: Final = REPO_ROOT.parent / "shared" / "datasets" / "video_games.txt"
DEFAULT_CONFIG: Final = REPO_ROOT / "pipelines" / "configs" / "video_games.yaml"
PAPER: Final = {"hr@10": 0.7410, "ndcg@10": 0.5360}
PROTOCOLS: Final = ("sampled", "full")


def _prepare(workdir: Path) -> Path:
    from recsys.data import load_prepared, prepare_dataset, write_prepared
    from recsys.data.prepare import fingerprint

    data = workdir / "video_games"
    if data.is_dir() and load_prepared(data).fingerprint == fingerprint(VIDEO_GAMES):
        return data
    print(f"[quality] preparing {VIDEO_GAMES}", file=sys.stderr)
    return write_prepared(prepare_dataset(VIDEO_GAMES), data, overwrite=True)


def _evaluate(data: Path, checkpoint: Path) -> dict[str, Any]:
    from recsys.data import load_prepared
    from recsys.evaluation import (
        build_report,
        evaluation_task,
        markov_scorer,
        most_popular_scorer,
        report_payload,
        run_evaluation,
    )
    from recsys.evaluation.scorers import Scorer
    from recsys.training import checkpoint_scorer

    dataset = load_prepared(data)
    scorers: list[Scorer] = [
        checkpoint_scorer(checkpoint, dataset),
        most_popular_scorer(dataset),
        markov_scorer(dataset),
    ]
    payloads = {}
    for protocol in PROTOCOLS:
        print(f"[quality] evaluating ({protocol})", file=sys.stderr)
        task = evaluation_task(dataset, "test", protocol, (10, 20), 100, "uniform", 0)
        results = [run_evaluation(task, scorer) for scorer in scorers]
        payloads[protocol] = report_payload(build_report(results, 1000, 0.95, 0))
    return payloads


def _cell(metrics: dict[str, Any], name: str) -> str:
    value = metrics[name]
    return f"{value['mean']:.4f} [{value['ci_low']:.4f}, {value['ci_high']:.4f}]"


def _markdown(report: dict[str, Any]) -> str:
    from recsys.training import TrainConfig

    sampled = report["evaluation"]["sampled"]["scorers"]
    model = sampled["sasrec"]["metrics"]
    summary = report["training"]
    lines = [
        "# Quality on Amazon Video Games (the SASRec paper's data)",
        "",
        "Leave-one-out, test split (history = training + validation items), "
        f"{report['evaluation']['full']['num_users']:,} users, 23,715 items. "
        "Mean over users with a 95% bootstrap interval (1000 resamples over users).",
        "",
        "## The bar: the paper's protocol (100 sampled negatives)",
        "",
        "| | HR@10 | NDCG@10 |",
        "|---|---:|---:|",
        f"| SASRec, paper (Kang & McAuley 2018, Table III) | {PAPER['hr@10']:.4f} | "
        f"{PAPER['ndcg@10']:.4f} |",
        f"| **ours** | **{_cell(model, 'hr@10')}** | **{_cell(model, 'ndcg@10')}** |",
        f"| bar met | {'yes' if report['checks']['hr@10'] else '**no**'} | "
        f"{'yes' if report['checks']['ndcg@10'] else '**no**'} |",
        "",
        "## Both protocols, model and baselines",
        "",
        "| protocol | scorer | HR@10 | NDCG@10 | HR@20 | NDCG@20 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for protocol in PROTOCOLS:
        for name, scorer in report["evaluation"][protocol]["scorers"].items():
            metrics = scorer["metrics"]
            lines.append(
                f"| {protocol} | {name} | {_cell(metrics, 'hr@10')} | {_cell(metrics, 'ndcg@10')}"
                f" | {_cell(metrics, 'hr@20')} | {_cell(metrics, 'ndcg@20')} |"
            )
    lines += [
        "",
        "Full-ranking and sampled numbers are not comparable with each other. Under full "
        "ranking a held-out item already in the user's history counts as a miss.",
        "",
        "## Training",
        "",
        f"- wall time {summary['wall_time_s']:.0f} s on {report['machine']} "
        f"({summary['epochs_trained']} epochs, {summary['train_seconds_per_epoch']} s per "
        f"training epoch, device {summary['device']}); best epoch {summary['best_epoch']} "
        f"by validation NDCG@10 ({TrainConfig.build(summary['config']).validation_label()})",
        f"- config (the run's `config.yaml`; from `{report['config_file']}`):",
        "",
        "```yaml",
        report["training"]["config_yaml"].strip(),
        "```",
        "",
        f"Curves: `{report['name']}_curves.png`.",
        "",
        "Reproduce (prepare + train + evaluate):",
        "",
        "```",
        f".venv/bin/python bench/quality_video_games.py {report['arguments']}".rstrip(),
        "# the same by hand:",
        "recsys prepare --input ../shared/datasets/video_games.txt --out runs/video_games",
        f"recsys train --data runs/video_games --out runs/vg --config {report['config_file']}",
        "recsys evaluate --data runs/video_games --checkpoint runs/vg/checkpoints/best.ckpt "
        "--compare-baselines --protocol sampled --k 10,20 --out runs/vg-sampled",
        "```",
        "",
        f"Run {report['created_at']}.",
    ]
    return "\n".join(lines) + "\n"


def _shown_path(path: Path) -> str:
    """The path relative to the repository when it is inside it (as a user would type it)."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else str(path)


def _arguments(args: argparse.Namespace) -> str:
    """The flags that reproduce this report (none for the default benchmark)."""
    parts = []
    if args.config.resolve() != DEFAULT_CONFIG:
        parts.append(f"--config {_shown_path(args.config)}")
    if args.name != "quality_video_games":
        parts.append(f"--name {args.name}")
    return " ".join(parts)


def _machine(device: str) -> str:
    """Where training ran, in words: the GPU's name, or the CPU's core count."""
    import os

    import torch

    if device.startswith("cuda"):
        return f"a {torch.cuda.get_device_name()} GPU"
    return f"this CPU ({os.cpu_count()} cores)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="evaluate this existing run folder")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "bench" / ".work")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="experiment YAML")
    parser.add_argument("--name", default="quality_video_games", help="results file stem")
    args = parser.parse_args()
    if not VIDEO_GAMES.is_file():
        print(f"skipped: {VIDEO_GAMES} not found (../shared/datasets is absent)", file=sys.stderr)
        return

    import json

    from recsys.io import atomic_write_text, write_json
    from recsys.training import TrainConfig, train

    data = _prepare(args.workdir)
    run = args.run
    if run is None:
        run = args.workdir / "runs" / args.name
        train(data, run, TrainConfig.from_yaml(args.config), overwrite=True)
    summary = json.loads((run / "summary.json").read_text())
    evaluation = _evaluate(data, run / "checkpoints" / "best.ckpt")
    model = evaluation["sampled"]["scorers"]["sasrec"]["metrics"]
    report = {
        "created_at": datetime.now(UTC).isoformat(),
        "name": args.name,
        "config_file": _shown_path(args.config),
        "arguments": _arguments(args),
        "machine": _machine(summary["device"]),
        "paper": PAPER,
        "checks": {name: model[name]["mean"] >= bar for name, bar in PAPER.items()},
        "training": {k: v for k, v in summary.items() if k != "config"}
        | {"config": summary["config"], "config_yaml": (run / "config.yaml").read_text()},
        "evaluation": evaluation,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / f"{args.name}.json", report)
    atomic_write_text(args.results / f"{args.name}.md", _markdown(report))
    shutil.copyfile(run / "training_curves.png", args.results / f"{args.name}_curves.png")
    print((args.results / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
