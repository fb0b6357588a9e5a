"""``recsys evaluate``: a checkpoint (and/or baselines) on a split -> a report folder.

The first scorer (the checkpoint, else the first baseline) is the reference; every other one is
compared with it on the same users (and, for the sampled protocol, the same negatives).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import typer
from pydantic import Field, field_validator
from rich.table import Table

from pipelines.console import console
from pipelines.options import OVERWRITE, Option, config_command
from recsys.config import Config
from recsys.data import load_prepared
from recsys.errors import ConfigError, OutputExistsError
from recsys.evaluation import (
    BASELINE_NAMES,
    BaselineName,
    EvaluationProtocol,
    EvaluationReport,
    NegativeSampling,
    Scorer,
    baseline_scorer,
    build_report,
    evaluation_task,
    run_evaluation,
    write_report,
)
from recsys.export import artifact_scorer
from recsys.training import checkpoint_scorer


class EvaluateConfig(Config):
    """What ``recsys evaluate`` ranks, how, and how the intervals are computed."""

    baseline: list[BaselineName] = Field(default_factory=list)
    """A baseline to evaluate too; repeat the flag for several (most-popular, markov)."""
    compare_baselines: bool = False
    """Add every baseline (most-popular and markov)."""
    split: Literal["validation", "test"] = "test"
    """Held-out split to rank."""
    protocol: EvaluationProtocol = "full"
    """full: against every item, history excluded. sampled: against --negatives items the user
    never interacted with (the SASRec paper's)."""
    k: tuple[int, ...] = (5, 10, 20)
    """List lengths, comma-separated (5,10,20)."""
    negatives: int = Field(100, ge=1)
    """sampled: negatives per user."""
    negative_sampling: NegativeSampling = "uniform"
    """sampled: uniform (the paper), or by item popularity."""
    seed: int = 0
    """Seed of the negatives and the bootstrap."""
    resamples: int = Field(1000, ge=1)
    """Bootstrap resamples over users."""
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    """Confidence level of the intervals."""
    users: int | None = Field(None, ge=1)
    """Evaluate a seeded uniform sample of this many users (default: every user of the split);
    the bootstrap intervals then include the sampling error."""
    batch_size: int | None = Field(None, ge=1)
    """Users per scoring batch (default: by catalogue size)."""
    device: str = "cpu"
    """Where the checkpoint scores: cpu, cuda, cuda:1, auto."""

    @field_validator("k", mode="before")
    @classmethod
    def _list_lengths(cls, value: Any) -> Any:
        """``"5,10,20"`` (the flag's form), a single number, or a list -> distinct, ascending."""
        if isinstance(value, str):
            try:
                value = [int(part) for part in value.split(",") if part.strip()]
            except ValueError as err:
                raise ValueError(f"expected comma-separated integers, e.g. 5,10,20: {err}") from err
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, list | tuple):
            values = sorted(set(value))
            if not values or values[0] < 1:
                raise ValueError(f"needs positive list lengths, got {list(value)}")
            return tuple(values)
        return value

    @property
    def baselines(self) -> list[str]:
        """The baselines asked for, each once, in order (every one with compare_baselines)."""
        names: list[str] = list(dict.fromkeys(self.baseline))
        if self.compare_baselines:
            names += [name for name in BASELINE_NAMES if name not in names]
        return names


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


def run_evaluate(
    settings: EvaluateConfig,
    data: Path,
    out: Path,
    checkpoint: Path | None = None,
    artifact: Path | None = None,
    overwrite: bool = False,
) -> EvaluationReport:
    """Check the options, evaluate every scorer on one task, build and write the report."""
    out = Path(out)
    if out.exists() and not overwrite:
        # Checked first, so that a whole evaluation is not wasted on a refusal.
        raise OutputExistsError(f"--out {out} already exists (pass --overwrite to replace it)")
    if checkpoint is not None and artifact is not None:
        raise ConfigError("--checkpoint and --artifact exclude each other: give one")
    baselines = settings.baselines
    if checkpoint is None and artifact is None and not baselines:
        raise ConfigError(
            "nothing to evaluate: give --checkpoint, --artifact or --baseline "
            f"({', '.join(BASELINE_NAMES)})"
        )
    scoring_device = resolve_device(settings.device)
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
    split, protocol = settings.split, settings.protocol
    with console.status(f"preparing the {split} split ({protocol} protocol)") as status:
        task = evaluation_task(
            dataset,
            split,
            protocol,
            settings.k,
            settings.negatives,
            settings.negative_sampling,
            settings.seed,
            settings.users,
        )
        results = []
        for scorer in scorers:

            def progress(done: int, total: int, name: str = scorer.name) -> None:
                status.update(f"evaluating {name}: {done:,}/{total:,} users")

            results.append(run_evaluation(task, scorer, settings.batch_size, on_progress=progress))
        status.update("bootstrapping intervals")
        report = build_report(
            results, settings.resamples, settings.confidence, settings.seed, context
        )
        status.update(f"writing {out}")
        write_report(report, out, overwrite=overwrite)
    return report


def _print_report(
    settings: EvaluateConfig,
    data: Path,
    out: Path,
    checkpoint: Path | None,
    artifact: Path | None,
    overwrite: bool,
) -> None:
    report = run_evaluate(settings, data, out, checkpoint, artifact, overwrite)
    console.print(summary_table(report))
    console.print(f"report written to {out}")


evaluate = config_command(
    EvaluateConfig,
    _print_report,
    options=[
        Option("data", Annotated[Path, typer.Option(help="Prepared dataset folder.")]),
        Option(
            "out",
            Annotated[
                Path,
                typer.Option(help="Report folder to write: metrics.json, report.md, PNG plots."),
            ],
        ),
        Option(
            "checkpoint",
            Annotated[
                Path | None,
                typer.Option(help="Training checkpoint (RUN_DIR/checkpoints/best.ckpt)."),
            ],
            None,
        ),
        Option(
            "artifact",
            Annotated[
                Path | None,
                typer.Option(help="Exported artifact folder (`recsys export`); scores on CPU."),
            ],
            None,
        ),
        OVERWRITE,
    ],
    doc="""Rank each user's held-out item with a model and/or baselines; write metrics with
    bootstrap intervals, paired differences against the first scorer, a Markdown report and plots.
    """,
)


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
