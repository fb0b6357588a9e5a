"""``recsys demo``: the main job end to end on embedded defaults (synthetic data, CPU).

Synthesize a log, prepare it, train, evaluate against the baselines, export, then serve: the
gRPC server runs in-process on a free port with an embedded Redis, the dataset's latest
histories are loaded into it (``recsys load-features``), and a client sends real requests over
a real channel: a known user, the same request again (answered from the cache), an explanation,
new events recorded for the user (the next answer reflects them), and a user the store has
never seen (popularity fallback). The server then shuts down gracefully.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import grpc
import typer
from pydantic import Field

from pipelines.console import console
from pipelines.jobs.evaluate import EvaluateConfig, run_evaluate, summary_table
from pipelines.jobs.export import artifact_table
from pipelines.jobs.load_features import run_load_features
from pipelines.jobs.prepare import run_prepare
from pipelines.jobs.synth import SynthSettings, run_synth
from pipelines.options import Option, config_command
from recsys.data import CleaningConfig, PrepareConfig, load_prepared
from recsys.export import export_artifact, read_manifest
from recsys.training import TrainConfig, train
from serving.client import explanation_table, response_table
from serving.config import ServeConfig
from serving.proto.recsys.v1 import recommender_pb2 as pb
from serving.proto.recsys.v1 import recommender_pb2_grpc as pb_grpc
from serving.server import RecommenderApp

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


class DemoSettings(SynthSettings):
    """The demo's synthetic log (``recsys synth``'s settings), its training length and seed."""

    max_epochs: int | None = Field(None, ge=1)
    """Training epochs (upper bound; default: demo.yaml's)."""


def run_demo(settings: DemoSettings, workdir: Path) -> None:
    """Every step of the demo, into ``workdir`` (replaced)."""
    console.rule("1/6 synthesize an interaction log")
    log_path = run_synth(
        settings.synth_config(),
        workdir / "log.parquet",
        overwrite=True,
    )
    console.rule("2/6 prepare the dataset (5-core, leave-one-out)")
    five_core = CleaningConfig(min_user_interactions=5, min_item_interactions=5)
    data_dir = workdir / "data"
    run_prepare(log_path, data_dir, PrepareConfig(cleaning=five_core), overwrite=True)
    console.rule(f"3/6 train SASRec ({DEMO_CONFIG.name})")
    overrides: dict[str, int] = {"seed": settings.seed}
    if settings.max_epochs is not None:
        overrides["max_epochs"] = settings.max_epochs
    config = TrainConfig.from_yaml(DEMO_CONFIG, overrides)
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


demo = config_command(
    DemoSettings,
    run_demo,
    [
        Option(
            "workdir",
            Annotated[
                Path,
                typer.Option(help="Folder for everything the demo writes (replaced on each run)."),
            ],
            Path("runs/demo"),
        )
    ],
    doc="""Synthesize a log, prepare it, train SASRec, evaluate it, export it, serve it (gRPC +
    embedded Redis) and send it a few requests.""",
)


@dataclass(frozen=True)
class DemoAnswers:
    """What the demo's requests got back, in the order it sent them."""

    history: pb.GetUserHistoryResponse
    first: pb.RecommendResponse
    again: pb.RecommendResponse
    explained: pb.RecommendResponse
    recorded: pb.RecordInteractionsResponse
    after: pb.RecommendResponse
    cold: pb.RecommendResponse


def run_serving_demo(artifact: Path, data: Path) -> DemoAnswers:
    """Serve ``artifact``, load ``data``'s histories, send a few requests, print the answers and
    return them."""
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(_demo(artifact, data))


async def _demo(artifact: Path, data: Path) -> DemoAnswers:
    # The demo's store is throwaway: nothing persisted, so a second demo starts from scratch.
    app = RecommenderApp(ServeConfig(port=0, grace_s=2.0, redis_dir="none"), artifact)
    port = await app.start()
    try:
        console.print(
            f"server on 127.0.0.1:{port} (model {app.runtime.snapshot.model_version}); "
            f"embedded Redis at {app.redis_url}"
        )
        summary = await asyncio.to_thread(run_load_features, data, app.redis_url)
        console.print(f"loaded {summary['users']:,} user histories in {summary['seconds']} s")
        users = load_prepared(data).users.table
        user = str(users.get_column(users.columns[1])[0])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            answers = await _requests(pb_grpc.RecommenderStub(channel), user)
    finally:
        await app.stop()
    console.print("server stopped (health NOT_SERVING, in-flight calls drained, Redis closed)")
    return answers


async def _requests(stub: pb_grpc.RecommenderAsyncStub, user: str) -> DemoAnswers:
    history = await stub.GetUserHistory(pb.GetUserHistoryRequest(user_id=user, limit=5), timeout=5)
    console.print(f"user {user!r}: newest stored events {', '.join(history.item_ids)}")
    request = pb.RecommendRequest(user_id=user, k=5)
    first = await stub.Recommend(request, timeout=5)
    console.print(response_table(first, f"user {user}"))
    again = await stub.Recommend(request, timeout=5)
    console.print(response_table(again, f"user {user}, same request again"))

    explained = await stub.Recommend(
        pb.RecommendRequest(user_id=user, k=5, explain=True), timeout=5
    )
    console.print(
        f"user {user}, asked with explain=true: the history items whose attention drove the answer"
    )
    drivers = explanation_table(explained)
    if drivers is not None:
        console.print(drivers)

    new_events = [item.item_id for item in first.items[:2]]
    recorded = await stub.RecordInteractions(
        pb.RecordInteractionsRequest(user_id=user, item_ids=new_events), timeout=5
    )
    console.print(
        f"RecordInteractions {user!r} <- {', '.join(new_events)}: history version "
        f"{recorded.history_version}, {recorded.history_length} items stored"
    )
    after = await stub.Recommend(request, timeout=5)
    console.print(response_table(after, f"user {user} after the new events"))

    cold = await stub.Recommend(pb.RecommendRequest(user_id="someone-new", k=5), timeout=5)
    console.print(response_table(cold, "a user the store has never seen"))
    return DemoAnswers(history, first, again, explained, recorded, after, cold)
