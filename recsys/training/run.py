"""The training job: prepared dataset + ``TrainConfig`` -> checkpoints, logs, summary, curves.

Run folder layout::

    config.yaml                 the resolved configuration
    checkpoints/best.ckpt       best validation NDCG@10 (under the config's val_protocol)
    checkpoints/last.ckpt       the latest epoch, for --resume
    logs/metrics.csv            per-step and per-epoch metrics (plus TensorBoard if installed);
                                a resumed run adds logs/resumed-N/metrics.csv
    summary.json                best epoch and metrics, wall time, seconds per epoch, config
    training_curves.png
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger

from recsys.data import PreparedDataset, load_prepared
from recsys.errors import ConfigError, DataError, OutputExistsError
from recsys.io import atomic_write_text, write_json
from recsys.training.callbacks import (
    AdaptiveValidation,
    BudgetPlanner,
    EpochTimer,
    progress_bar,
)
from recsys.training.config import TrainConfig
from recsys.training.curves import best_epoch, epoch_metrics, plot_curves
from recsys.training.datamodule import SequenceDataModule
from recsys.training.memory import (
    VALIDATION_CELLS,
    auto_eval_batch_size,
    available_memory,
    check_fits,
    estimate_training_memory,
)
from recsys.training.module import VALIDATION_METRIC, SASRecModule
from recsys.training.recipe import Choice, auto_precision, resolve_recipe

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
CURVES_FILE = "training_curves.png"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT = "best.ckpt"


def resolve_precision(config: TrainConfig) -> str:
    """The Lightning precision: the config's, or for ``auto`` the recipe's rule
    (``recsys.training.recipe.auto_precision``)."""
    if config.precision != "auto":
        return config.precision
    wants_gpu = config.accelerator in ("auto", "gpu", "cuda")
    return auto_precision(wants_gpu and torch.cuda.is_available())[0]


def is_worker_process() -> bool:
    """Whether this is a data-parallel worker other than rank 0 (a DDP launcher's child, or a
    torchrun process of rank > 0): such a process re-runs the command but must not touch the run
    folder that rank 0 has already checked (and, with --overwrite, cleared and started)."""
    return any(int(os.environ.get(name, "0") or 0) > 0 for name in ("LOCAL_RANK", "RANK"))


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> Path | None:
    """Check the run folder against the flags; return the checkpoint to resume from, if any."""
    last = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    if resume:
        if not last.is_file():
            raise ConfigError(f"--resume: no checkpoint to resume from at {last}")
        _check_readable(last)
        return last
    if is_worker_process():
        return None
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise OutputExistsError(
                f"run folder {run_dir} already exists (pass --resume to continue it, "
                "or --overwrite to start over)"
            )
        shutil.rmtree(run_dir)
    return None


def _check_readable(checkpoint: Path) -> None:
    """Refuse a truncated or corrupt checkpoint before training starts (Lightning would fail
    deep inside ``fit`` with a traceback)."""
    try:
        # Our own file, written by Lightning: it holds more than tensors (hyper-parameters).
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(
            f"--resume: {checkpoint} is not a readable checkpoint ({first_line}); pass "
            "--overwrite to start the run over"
        ) from err
    if not isinstance(state, dict) or "state_dict" not in state:
        raise DataError(f"--resume: {checkpoint} is not a training checkpoint of recsys train")


def train(
    data_dir: Path,
    run_dir: Path,
    config: TrainConfig,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train SASRec on a prepared dataset; returns (and writes) the run summary."""
    run_dir = Path(run_dir)
    resume_from = prepare_run_dir(run_dir, resume, overwrite)
    dataset = load_prepared(data_dir)
    torch.set_flush_denormal(True)  # denormal floats in tiny Adam states slow CPU steps 10x
    pl.seed_everything(config.seed, workers=True, verbose=False)
    on_gpu = torch.cuda.is_available() and config.accelerator in ("auto", "gpu", "cuda")
    config, choices = resolve_recipe(config, dataset, on_gpu)
    for choice in choices:
        log.info("recipe: %s = %s (%s)", choice.key, choice.value, choice.rule)
    validation_period = AdaptiveValidation() if config.check_val_every_n_epoch == "auto" else None
    planner = BudgetPlanner(_budget_s(config))
    first_period = 1 if validation_period is not None else int(config.check_val_every_n_epoch)
    backbone = config.model_config_for(dataset.num_items)
    if config.eval_batch_size == "auto":
        eval_batch_size = auto_eval_batch_size(dataset.num_items, 1024)
        choices.append(
            Choice(
                "eval_batch_size",
                eval_batch_size,
                f"up to 1024 users and about {VALIDATION_CELLS:,} scores per validation batch",
            )
        )
        log.info("recipe: eval_batch_size = %s", eval_batch_size)
    else:
        eval_batch_size = config.eval_batch_size
    memory = estimate_training_memory(config, backbone, eval_batch_size, dataset.num_users)
    check_fits(memory, available_memory(on_gpu), "the GPU" if on_gpu else "this machine")
    log.info("memory estimate (GiB): %s", memory.as_dict())
    data = SequenceDataModule(
        dataset,
        max_len=backbone.max_len,
        batch_size=config.batch_size,
        eval_batch_size=eval_batch_size,
        seed=config.seed,
        num_workers=config.num_workers,
        pin_memory=on_gpu,
        val_negatives=config.val_negatives if config.val_protocol == "sampled" else None,
        val_users=int(config.val_users),  # resolved by the recipe
    )
    module = SASRecModule(
        model=backbone.to_dict(),
        train=config.model_dump(mode="json"),
        dataset_fingerprint=dataset.fingerprint,
        item_train_counts=data.item_train_counts.tolist(),
        mean_targets_per_batch=data.mean_targets_per_batch,
    )
    timer = EpochTimer()
    best_checkpoint = ModelCheckpoint(
        dirpath=run_dir / CHECKPOINT_DIR,
        filename=Path(BEST_CHECKPOINT).stem,
        monitor=VALIDATION_METRIC,
        mode="max",
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    # A second callback for the latest epoch: Lightning's save_last only saves when the best
    # checkpoint changes, which would make --resume restart from the best epoch, not the last.
    last_checkpoint = ModelCheckpoint(
        dirpath=run_dir / CHECKPOINT_DIR,
        filename=Path(LAST_CHECKPOINT).stem,
        save_top_k=1,
        every_n_epochs=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    # Checked after each validation, so that patience counts validations whatever the period
    # (Lightning would otherwise check after every training epoch whenever it starts at one).
    stopper = EarlyStopping(
        monitor=VALIDATION_METRIC,
        mode="max",
        patience=config.patience,
        check_on_train_epoch_end=False,
    )
    trainer = pl.Trainer(
        default_root_dir=run_dir,
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        precision=resolve_precision(config),  # type: ignore[arg-type]
        max_epochs=config.max_epochs,
        max_time=_max_time(config),
        # A run shorter than the validation period still validates (and keeps) its last epoch.
        check_val_every_n_epoch=min(first_period, config.max_epochs),
        # The timer goes first: time spent saving checkpoints is not training time.
        callbacks=[
            timer,
            best_checkpoint,
            last_checkpoint,
            stopper,
            planner,
        ]
        + ([validation_period] if validation_period is not None else [])
        + ([progress_bar()] if progress else []),
        logger=_loggers(run_dir, resuming=resume_from is not None),
        log_every_n_steps=10,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # the length-bucketed sampler shards by rank itself
        deterministic="warn",
        enable_progress_bar=progress,
        enable_model_summary=progress,
    )
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / CONFIG_FILE, config.to_yaml())
    started = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=resume_from)
    best_path = run_dir / CHECKPOINT_DIR / BEST_CHECKPOINT
    if not best_path.is_file() and trainer.should_stop and _budget_s(config) is not None:
        # A large log and a small budget: the time ran out inside the first epoch, before any
        # validation. The run still ends with a model to export: the one it has, validated.
        log.warning(
            "the time budget ran out before the first validation: validating the model as it "
            "stands and keeping it as the best checkpoint"
        )
        trainer.validate(module, datamodule=data, verbose=False)
        trainer.save_checkpoint(best_path)
    wall_time = time.perf_counter() - started
    summary: dict[str, Any] = {}
    if trainer.is_global_zero:
        summary = _summarise(run_dir, config, dataset, trainer, stopper, timer, wall_time)
        summary["recipe"] = [choice.as_dict() for choice in choices]
        summary["memory_estimate"] = memory.as_dict()
        if validation_period is not None:
            summary["recipe"].append(
                {
                    "key": "check_val_every_n_epoch",
                    "value": validation_period.period,
                    "rule": f"measured on the first epoch: validation within "
                    f"{validation_period.share:.0%} of the training time",
                }
            )
        write_json(run_dir / SUMMARY_FILE, summary)
    return summary


def _stopped_by(trainer: pl.Trainer, stopper: EarlyStopping, config: TrainConfig) -> str:
    """Why the run ended: ``early_stopping`` (patience ran out), ``max_epochs``, ``time_budget``
    (``max_minutes``) or ``interrupted`` (Ctrl-C, or another callback stopped it)."""
    if stopper.stopped_epoch > 0:
        return "early_stopping"
    if trainer.current_epoch >= config.max_epochs:
        return "max_epochs"
    if _budget_s(config) is not None and trainer.should_stop:
        return "time_budget"
    return "interrupted"


def _budget_s(config: TrainConfig) -> float | None:
    minutes = config.max_minutes
    return 60.0 * minutes if isinstance(minutes, int | float) else None


def _max_time(config: TrainConfig) -> timedelta | None:
    budget = _budget_s(config)
    return timedelta(seconds=budget) if budget is not None else None


def _loggers(run_dir: Path, resuming: bool) -> list[Logger]:
    """CSV (and TensorBoard) logs; a resumed run logs into a new sub-folder, so that nothing
    already logged is overwritten."""
    version = ""
    if resuming:
        version = f"resumed-{len(list((run_dir / 'logs').glob('resumed-*'))) + 1}"
    loggers: list[Logger] = [CSVLogger(run_dir, name="logs", version=version)]
    if importlib.util.find_spec("tensorboard") is not None:
        loggers.append(TensorBoardLogger(run_dir, name="logs", version="tensorboard"))
    return loggers


def _summarise(
    run_dir: Path,
    config: TrainConfig,
    dataset: PreparedDataset,
    trainer: pl.Trainer,
    stopper: EarlyStopping,
    timer: EpochTimer,
    wall_time: float,
) -> dict[str, Any]:
    epochs = epoch_metrics(sorted((run_dir / "logs").glob("**/metrics.csv")))
    best = best_epoch(epochs)
    title = f"SASRec ({config.loss}) — {run_dir.name}"
    plot_curves(epochs, run_dir / CURVES_FILE, title=title, protocol=config.validation_label())
    durations = timer.durations
    best_path = run_dir / CHECKPOINT_DIR / BEST_CHECKPOINT
    stopped_by = _stopped_by(trainer, stopper, config)
    return {
        "created_at": datetime.now(UTC).isoformat(),
        "best_epoch": best.get("epoch"),
        "best_validation": {k: v for k, v in best.items() if k.startswith("val/")},
        "best_checkpoint": str(best_path) if best_path.is_file() else None,
        "epochs_trained": trainer.current_epoch,
        "stopped_by": stopped_by,
        "stopped_early": stopped_by == "early_stopping",
        "wall_time_s": round(wall_time, 2),
        "train_seconds_per_epoch": round(sum(durations) / len(durations), 3) if durations else None,
        "epochs_per_second": round(len(durations) / sum(durations), 4) if durations else None,
        "device": str(trainer.strategy.root_device),
        "precision": str(trainer.precision),
        "dataset": {
            "fingerprint": dataset.fingerprint,
            "num_users": dataset.num_users,
            "num_items": dataset.num_items,
            "num_interactions": dataset.stats["num_interactions"],
        },
        "config": config.model_dump(mode="json"),
    }
