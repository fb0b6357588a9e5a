"""The recommended recipe: every ``auto`` key derived from the data and the device, by its rule,
and the choices recorded with the run."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from recsys.data import CleaningConfig, PrepareConfig, prepare_dataset, write_prepared
from recsys.data.synthetic import SynthConfig, generate_log
from recsys.errors import ConfigError
from recsys.training import TrainConfig, recipe, resolve_recipe, train
from recsys.training.recipe import CPU_NEGATIVES, GPU_NEGATIVES


def _dataset(events_per_user: int, users: int = 60, items: int = 40) -> object:
    rows = [(u, (u * 7 + t) % items, t) for u in range(users) for t in range(events_per_user)]
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return prepare_dataset(frame)


def test_sparse_short_histories_get_the_sparse_rules() -> None:
    dataset = _dataset(events_per_user=8)
    config, choices = resolve_recipe(TrainConfig(), dataset, on_gpu=False)  # type: ignore[arg-type]
    assert (config.model.max_len, config.model.dropout) == (50, 0.5)
    assert config.num_negatives == CPU_NEGATIVES
    assert config.loss == "ce"  # 40 items: no more than the negatives a step affords
    assert config.max_minutes == 15.0
    assert {c.key for c in choices} == {
        "max_len",
        "dropout",
        "num_negatives",
        "loss",
        "max_minutes",
        "precision",
        "val_users",
        "embedding_updates",
    }
    assert all(c.rule for c in choices)
    assert config.val_users == 60  # every validation user


def test_long_histories_get_a_longer_window_and_less_dropout() -> None:
    dataset = _dataset(events_per_user=120)
    config, _ = resolve_recipe(TrainConfig(), dataset, on_gpu=True)  # type: ignore[arg-type]
    assert config.model.max_len == 120  # the 95th percentile, rounded up to tens
    assert config.model.dropout == 0.2
    assert config.num_negatives == GPU_NEGATIVES


def test_a_catalogue_larger_than_the_negatives_is_sampled() -> None:
    dataset = _dataset(events_per_user=8, users=1000, items=5000)
    config, choices = resolve_recipe(TrainConfig(), dataset, on_gpu=False)  # type: ignore[arg-type]
    assert config.loss == "sampled_softmax"
    assert "5,000 items > 4,096 negatives" in next(c.rule for c in choices if c.key == "loss")


def test_a_large_catalogue_on_a_cpu_updates_only_the_rows_a_step_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset = _dataset(events_per_user=8, users=1000, items=5000)
    assert resolve_recipe(TrainConfig(), dataset, on_gpu=False)[0].embedding_updates == "dense"  # type: ignore[arg-type]
    monkeypatch.setattr(recipe, "SPARSE_UPDATE_ITEMS", 1000)  # 5,000 items: "large"
    config, choices = resolve_recipe(TrainConfig(), dataset, on_gpu=False)  # type: ignore[arg-type]
    assert config.embedding_updates == "sparse"
    rule = next(c.rule for c in choices if c.key == "embedding_updates")
    assert "5,000 items > 1,000 on a CPU" in rule
    assert resolve_recipe(TrainConfig(), dataset, on_gpu=True)[0].embedding_updates == "dense"  # type: ignore[arg-type]
    full = TrainConfig.build({"loss": "ce"})
    assert resolve_recipe(full, dataset, on_gpu=False)[0].embedding_updates == "dense"  # type: ignore[arg-type]
    chosen = TrainConfig.build({"embedding_updates": "dense"})
    assert resolve_recipe(chosen, dataset, on_gpu=False)[0].embedding_updates == "dense"  # type: ignore[arg-type]


def test_validation_samples_users_only_where_ranking_them_all_is_too_dear(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset = _dataset(events_per_user=8, users=1000, items=5000)
    monkeypatch.setattr(recipe, "VALIDATION_SCORES", 1000 * 5001 - 1)  # just too many
    monkeypatch.setattr(recipe, "MIN_VAL_USERS", 10)
    config, choices = resolve_recipe(TrainConfig(), dataset, on_gpu=False)  # type: ignore[arg-type]
    assert config.val_users == 999
    assert "a seeded sample that fits" in next(c.rule for c in choices if c.key == "val_users")
    monkeypatch.setattr(recipe, "MIN_VAL_USERS", 1000)
    config, _ = resolve_recipe(TrainConfig(), dataset, on_gpu=False)  # type: ignore[arg-type]
    assert config.val_users == 1000  # never fewer than the minimum


def test_keys_the_user_set_are_kept() -> None:
    dataset = _dataset(events_per_user=8)
    given = TrainConfig.build(
        {
            "max_len": 30,
            "dropout": 0.1,
            "loss": "bce",
            "max_minutes": None,
            "precision": "32-true",
            "val_users": 20,
            "embedding_updates": "sparse",
        }
    )
    config, choices = resolve_recipe(given, dataset, on_gpu=False)  # type: ignore[arg-type]
    assert (config.model.max_len, config.model.dropout, config.loss) == (30, 0.1, "bce")
    assert config.max_minutes is None and config.val_users == 20
    assert config.embedding_updates == "sparse"
    assert {c.key for c in choices} == {"num_negatives"}


def test_an_unresolved_config_cannot_build_a_backbone() -> None:
    with pytest.raises(ConfigError, match="max_len still 'auto'"):
        TrainConfig.build({"dropout": 0.2}).model_config_for(100)


def test_the_run_records_every_derived_value(tmp_path: Path) -> None:
    log = generate_log(SynthConfig(n_users=300, n_items=80, n_events=6000, seed=1))
    data = write_prepared(
        prepare_dataset(log, PrepareConfig(cleaning=CleaningConfig(min_user_interactions=3))),
        tmp_path / "data",
    )
    config = TrainConfig.build(
        {"hidden_size": 16, "n_blocks": 1, "max_epochs": 2, "accelerator": "cpu", "devices": 1}
    )
    summary = train(data, tmp_path / "run", config, progress=False)
    recorded = {choice["key"]: choice for choice in summary["recipe"]}
    assert set(recorded) >= {"max_len", "dropout", "loss", "max_minutes", "check_val_every_n_epoch"}
    assert recorded["check_val_every_n_epoch"]["value"] >= 1
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["recipe"] == summary["recipe"]
    resolved = TrainConfig.from_yaml(tmp_path / "run" / "config.yaml")
    assert resolved.model.max_len == recorded["max_len"]["value"]  # --resume reuses them


@pytest.mark.parametrize(
    ("flags", "expected"), [("fpu avx512f avx512_bf16", True), ("fpu avx2", False)]
)
def test_bf16_precision_only_where_the_cpu_computes_in_bf16(
    flags: str, expected: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor : 0\nflags : {flags}\n")
    original = recipe.Path

    def fake_path(name: str) -> Path:
        return cpuinfo if name == "/proc/cpuinfo" else original(name)

    monkeypatch.setattr(recipe, "Path", fake_path)
    config, choices = resolve_recipe(TrainConfig(), _dataset(8), on_gpu=False)  # type: ignore[arg-type]
    assert (config.precision == "bf16-mixed") is expected
    assert "bf16 instructions" in next(c.rule for c in choices if c.key == "precision")
