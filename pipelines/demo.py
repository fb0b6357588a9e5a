"""``recsys demo``: the main job end to end on embedded defaults (synthetic data, CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.console import console
from pipelines.evaluate import EvaluateConfig, run_evaluate, summary_table
from pipelines.export import artifact_table
from pipelines.prepare import run_prepare
from pipelines.serve_demo import run_serving_demo
from pipelines.synth import run_synth
from recsys.data import CleaningConfig, PrepareConfig
from recsys.data.synthetic import SynthConfig
from recsys.export import export_artifact, read_manifest
from recsys.training import TrainConfig, train

DEMO_CONFIG = Path(__file__).resolve().parent / "configs" / "demo.yaml"


def demo(
    workdir: Annotated[
        Path, typer.Option(help="Folder for everything the demo writes (replaced on each run).")
    ] = Path("runs/demo"),
    users: Annotated[int, typer.Option(help="Synthetic users.")] = 2_000,
    items: Annotated[int, typer.Option(help="Synthetic items.")] = 500,
    events: Annotated[int, typer.Option(help="Synthetic events.")] = 40_000,
    max_epochs: Annotated[int, typer.Option(help="Training epochs (upper bound).")] = 15,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Synthesize a log, prepare it, train SASRec, evaluate it, export it, serve it (gRPC +
    embedded Redis) and send it a few requests."""
    console.rule("1/6 synthesize an interaction log")
    log_path = run_synth(
        SynthConfig(n_users=users, n_items=items, n_events=events, seed=seed),
        workdir / "log.parquet",
        overwrite=True,
    )
    console.rule("2/6 prepare the dataset (5-core, leave-one-out)")
    five_core = CleaningConfig(min_user_interactions=5, min_item_interactions=5)
    data_dir = workdir / "data"
    run_prepare(log_path, data_dir, PrepareConfig(cleaning=five_core), overwrite=True)
    console.rule(f"3/6 train SASRec ({DEMO_CONFIG.name})")
    config = TrainConfig.from_yaml(DEMO_CONFIG, {"max_epochs": max_epochs, "seed": seed})
    summary = train(data_dir, workdir / "run", config, overwrite=True)
    best = summary["best_validation"]
    console.print(
        f"best epoch {summary['best_epoch']}: validation NDCG@10 {best['val/ndcg@10']:.4f}, "
        f"HR@10 {best['val/hr@10']:.4f} ({config.validation_label()}); "
        f"{summary['train_seconds_per_epoch']} s per epoch; curves in "
        f"{workdir / 'run' / 'training_curves.png'}"
    )
    console.rule("4/6 evaluate on the test split against the baselines (full ranking)")
    report = run_evaluate(
        EvaluateConfig(compare_baselines=True),
        data=data_dir,
        out=workdir / "report",
        checkpoint=workdir / "run" / "checkpoints" / "best.ckpt",
        overwrite=True,
    )
    console.print(summary_table(report))
    console.print(f"report: {workdir / 'report' / 'report.md'} (+ PNG plots)")
    console.rule("5/6 export a verified TorchScript artifact (what the server loads)")
    artifact = export_artifact(
        workdir / "run" / "checkpoints" / "best.ckpt",
        data_dir,
        workdir / "artifact",
        overwrite=True,
        metrics=workdir / "report" / "metrics.json",
    )
    console.print(artifact_table(read_manifest(artifact), artifact))
    console.rule(
        "6/6 serve it: gRPC server with an embedded Redis, features loaded, a few requests"
    )
    run_serving_demo(artifact, data_dir)
    console.rule("demo finished")
    console.print(f"everything is under {workdir}")
