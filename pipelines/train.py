"""``recsys train``: prepared dataset + YAML config (+ flag overrides) -> a training run folder.

Every key of ``TrainConfig`` is also a flag (``hidden_size`` -> ``--hidden-size``), generated
from the config class so the two can never drift apart.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import typer
import yaml

from pipelines.console import console
from recsys.errors import ConfigError
from recsys.training import TrainConfig, train

_NONE_WORDS = {"none", "null"}


def _literal_words(annotation: Any) -> set[str]:
    """The string choices a (possibly nested, e.g. ``Literal[...] | None``) annotation allows."""
    if get_origin(annotation) is Literal:
        return {choice for choice in get_args(annotation) if isinstance(choice, str)}
    return {word for arg in get_args(annotation) for word in _literal_words(arg)}


def parse_override(raw: str, key: str | None = None) -> Any:
    """A flag's text as a YAML scalar (``4`` -> 4, ``true`` -> True, ``none`` -> None).

    ``none`` stays the word where ``key``'s choices include it (``--scheduler none``).
    """
    word = raw.strip().lower()
    if word in _NONE_WORDS:
        field = TrainConfig.model_fields.get(key or "")
        choices = _literal_words(field.annotation) if field is not None else set()
        return word if word in choices else None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def build_config(config_path: Path | None, overrides: dict[str, str | None]) -> TrainConfig:
    """The YAML file's keys (if any), then every flag that was given."""
    given = {
        key: parse_override(value, key) for key, value in overrides.items() if value is not None
    }
    if config_path is None:
        return TrainConfig.build(given, origin="the flags")
    return TrainConfig.from_yaml(config_path, given)


def _train(
    data: Path,
    out: Path,
    config: Path | None,
    resume: bool,
    overwrite: bool,
    **overrides: str | None,
) -> None:
    """Train SASRec on a prepared dataset (GPU when present, CPU otherwise).

    Writes RUN_DIR/checkpoints/{best,last}.ckpt, logs/metrics.csv, summary.json and
    training_curves.png. Any config key can be given as a flag and overrides the YAML file.
    """
    if resume and (out / "config.yaml").is_file():
        if config is not None:
            raise ConfigError(
                "--resume continues with the run's own config.yaml: drop --config "
                "(flags such as --max-epochs still override its keys)"
            )
        # Continue with the run's own configuration; flags (e.g. --max-epochs) still override.
        settings = build_config(out / "config.yaml", overrides)
    else:
        settings = build_config(config, overrides)
    summary = train(data, out, settings, resume=resume, overwrite=overwrite)
    if summary:
        best = summary["best_validation"]
        console.print(
            f"best epoch {summary['best_epoch']}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in sorted(best.items()))
            + f"; {summary['train_seconds_per_epoch']} s per training epoch; "
            f"wall time {summary['wall_time_s']} s; run folder {out}"
        )


def _signature() -> inspect.Signature:
    fixed = [
        inspect.Parameter(
            "data",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[Path, typer.Option(help="Prepared dataset folder.")],
        ),
        inspect.Parameter(
            "out",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[Path, typer.Option(help="Run folder (RUN_DIR) to write.")],
        ),
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                Path | None, typer.Option(help="Experiment YAML (see pipelines/configs/).")
            ],
        ),
        inspect.Parameter(
            "resume",
            inspect.Parameter.KEYWORD_ONLY,
            default=False,
            annotation=Annotated[
                bool, typer.Option(help="Continue RUN_DIR from checkpoints/last.ckpt.")
            ],
        ),
        inspect.Parameter(
            "overwrite",
            inspect.Parameter.KEYWORD_ONLY,
            default=False,
            annotation=Annotated[bool, typer.Option(help="Delete RUN_DIR first if it exists.")],
        ),
    ]
    keys = []
    for name, field in TrainConfig.model_fields.items():
        help_text = f"{field.description} [config default: {field.default}]"
        keys.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    str | None, typer.Option(help=help_text, rich_help_panel="Config keys")
                ],
            )
        )
    return inspect.Signature(fixed + keys)


def train_command(**kwargs: Any) -> None:
    _train(**kwargs)


train_command.__signature__ = _signature()  # type: ignore[attr-defined]
train_command.__doc__ = _train.__doc__
