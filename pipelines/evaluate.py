"""``recsys evaluate``: a checkpoint (and/or baselines) on a split -> a report folder.

The first scorer (the checkpoint, else the first baseline) is the reference; every other one is
compared with it on the same users (and, for the sampled protocol, the same negatives).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import typer
from rich.table import Table

from pipelines.console import console
from recsys.data import load_prepared
from recsys.errors import ConfigError, OutputExistsError
from recsys.evaluation import (
    BASELINE_NAMES,
    EvaluationProtocol,
    EvaluationReport,
    NegativeSampling,
    Scorer,
    baseline_scorer,
    build_report,
    check_ks,
    evaluation_task,
    run_evaluation,
    write_report,
)
from recsys.export import artifact_scorer
from recsys.training import checkpoint_scorer

SplitName = Literal["validation", "test"]


def parse_ks(raw: str) -> tuple[int, ...]:
    """``"5,10,20"`` -> ``(5, 10, 20)``; anything else raises ``ConfigError`` naming ``--k``.

    >>> parse_ks("20, 5,10")
    (5, 10, 20)
    """
    try:
        values = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError as err:
        raise ConfigError(f"--k {raw!r}: expected comma-separated integers, e.g. 5,10,20") from err
    return check_ks(values)


def resolve_device(device: str) -> torch.device:
    """``auto`` (a GPU when present), ``cpu``, ``cuda``, ``cuda:1``; errors name ``--device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"--device {device!r} is not a device (try cpu, cuda or auto)") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA GPU is available here")
    return resolved


def evaluate(
    data: Annotated[Path, typer.Option(help="Prepared dataset folder.")],
    out: Annotated[
        Path, typer.Option(help="Report folder to write: metrics.json, report.md, PNG plots.")
    ],
    checkpoint: Annotated[
        Path | None, typer.Option(help="Training checkpoint (RUN_DIR/checkpoints/best.ckpt).")
    ] = None,
    artifact: Annotated[
        Path | None, typer.Option(help="Exported artifact folder (`recsys export`); scores on CPU.")
    ] = None,
    baseline: Annotated[
        list[str] | None,
        typer.Option(
            help=f"A baseline to evaluate too ({', '.join(BASELINE_NAMES)}); repeat for several."
        ),
    ] = None,
    compare_baselines: Annotated[
        bool, typer.Option(help="Add every baseline (most-popular and markov).")
    ] = False,
    split: Annotated[SplitName, typer.Option(help="Held-out split to rank.")] = "test",
    protocol: Annotated[
        EvaluationProtocol,
        typer.Option(
            help="full: against every item, history excluded. sampled: against --negatives "
            "items the user never interacted with (the SASRec paper's)."
        ),
    ] = "full",
    k: Annotated[str, typer.Option(help="List lengths, comma-separated.")] = "5,10,20",
    negatives: Annotated[int, typer.Option(help="sampled: negatives per user.")] = 100,
    negative_sampling: Annotated[
        NegativeSampling,
        typer.Option(help="sampled: uniform (the paper), or by item popularity."),
    ] = "uniform",
    seed: Annotated[int, typer.Option(help="Seed of the negatives and the bootstrap.")] = 0,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples over users.")] = 1000,
    confidence: Annotated[float, typer.Option(help="Confidence level of the intervals.")] = 0.95,
    batch_size: Annotated[
        int | None, typer.Option(help="Users per scoring batch (default: by catalogue size).")
    ] = None,
    device: Annotated[
        str, typer.Option(help="Where the checkpoint scores: cpu, cuda, auto.")
    ] = "cpu",
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Rank each user's held-out item with a model and/or baselines; write metrics with
    bootstrap intervals, paired differences against the first scorer, a Markdown report and plots.
    """
    names = list(baseline or [])
    if compare_baselines:
        names += [name for name in BASELINE_NAMES if name not in names]
    report = run_evaluate(
        data=data,
        out=out,
        checkpoint=checkpoint,
        artifact=artifact,
        baselines=names,
        split=split,
        protocol=protocol,
        ks=parse_ks(k),
        num_negatives=negatives,
        negative_sampling=negative_sampling,
        seed=seed,
        resamples=resamples,
        confidence=confidence,
        batch_size=batch_size,
        device=device,
        overwrite=overwrite,
    )
    console.print(summary_table(report))
    console.print(f"report written to {out}")


def run_evaluate(
    data: Path,
    out: Path,
    checkpoint: Path | None = None,
    artifact: Path | None = None,
    baselines: list[str] | None = None,
    split: str = "test",
    protocol: EvaluationProtocol = "full",
    ks: tuple[int, ...] = (5, 10, 20),
    num_negatives: int = 100,
    negative_sampling: NegativeSampling = "uniform",
    seed: int = 0,
    resamples: int = 1000,
    confidence: float = 0.95,
    batch_size: int | None = None,
    device: str = "cpu",
    overwrite: bool = False,
) -> EvaluationReport:
    """Check the options, evaluate every scorer on one task, build and write the report."""
    out = Path(out)
    if out.exists() and not overwrite:
        # Checked first, so that a whole evaluation is not wasted on a refusal.
        raise OutputExistsError(f"--out {out} already exists (pass --overwrite to replace it)")
    if checkpoint is not None and artifact is not None:
        raise ConfigError("--checkpoint and --artifact exclude each other: give one")
    baselines = list(dict.fromkeys(baselines or []))
    unknown = [name for name in baselines if name not in BASELINE_NAMES]
    if unknown:
        raise ConfigError(f"--baseline {unknown[0]!r}: expected one of {', '.join(BASELINE_NAMES)}")
    if checkpoint is None and artifact is None and not baselines:
        raise ConfigError(
            "nothing to evaluate: give --checkpoint, --artifact or --baseline "
            f"({', '.join(BASELINE_NAMES)})"
        )
    _check_numbers(num_negatives, resamples, confidence, batch_size)
    scoring_device = resolve_device(device)
    dataset = load_prepared(data)
    scorers: list[Scorer] = []
    context: dict[str, Any] = {
        "dataset": str(data),
        "dataset_fingerprint": dataset.fingerprint or None,
    }
    if checkpoint is not None:
        scorers.append(checkpoint_scorer(checkpoint, dataset, device=scoring_device))
        context["checkpoint"] = str(checkpoint)
    if artifact is not None:
        scorers.append(artifact_scorer(artifact, dataset))
        context["artifact"] = str(artifact)
    scorers += [baseline_scorer(name, dataset) for name in baselines]
    with console.status(f"preparing the {split} split ({protocol} protocol)") as status:
        task = evaluation_task(dataset, split, protocol, ks, num_negatives, negative_sampling, seed)
        results = []
        for scorer in scorers:

            def progress(done: int, total: int, name: str = scorer.name) -> None:
                status.update(f"evaluating {name}: {done:,}/{total:,} users")

            results.append(run_evaluation(task, scorer, batch_size, on_progress=progress))
        status.update("bootstrapping intervals")
        report = build_report(results, resamples, confidence, seed, context)
        status.update(f"writing {out}")
        write_report(report, out, overwrite=overwrite)
    return report


def _check_numbers(
    num_negatives: int, resamples: int, confidence: float, batch_size: int | None
) -> None:
    """The cheap checks, before any data is read."""
    if num_negatives < 1:
        raise ConfigError(f"--negatives must be >= 1, got {num_negatives}")
    if resamples < 1:
        raise ConfigError(f"--resamples must be >= 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"--confidence must be in (0, 1), got {confidence}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")


def summary_table(report: EvaluationReport) -> Table:
    """Means of HR and NDCG at every K per scorer, with the users and seconds."""
    first = report.results[0]
    table = Table(
        title=f"{first.split} split, {first.protocol} protocol, {first.num_users:,} users"
    )
    table.add_column("scorer")
    for k in first.ks:
        table.add_column(f"HR@{k}", justify="right")
        table.add_column(f"NDCG@{k}", justify="right")
    table.add_column("seconds", justify="right")
    for result in report.results:
        cells = []
        for k in first.ks:
            cells += [
                f"{report.intervals[result.name][f'{name}@{k}'].estimate:.4f}"
                for name in ("hr", "ndcg")
            ]
        table.add_row(result.name, *cells, f"{result.seconds:.1f}")
    return table
