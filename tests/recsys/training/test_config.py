"""Training config: every committed YAML parses, and bad keys or values are named."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recsys.data import prepare_dataset
from recsys.errors import ConfigError
from recsys.training import TrainConfig, resolve_recipe

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "pipelines" / "configs").glob("*.yaml"))


def test_there_are_committed_configs() -> None:
    assert {p.name for p in CONFIGS} >= {"demo.yaml", "paper_video_games.yaml", "recommended.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_committed_config_parses(path: Path) -> None:
    frame = pl.DataFrame({"user_id": [1] * 5 + [2] * 5, "item_id": list(range(10))})
    config, _ = resolve_recipe(TrainConfig.from_yaml(path), prepare_dataset(frame), on_gpu=False)
    assert config.model_config_for(num_items=100).num_items == 100


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("hidden_size: 32\nloss: bce\n")
    config = TrainConfig.from_yaml(path, {"loss": "ce"})
    assert (config.model.hidden_size, config.loss) == (32, "ce")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"hiden_size": 3}, r"unknown key hiden_size \(--hiden-size\)"),
        ({"hidden_size": 50, "n_heads": 3}, r"n_heads \(3\) must divide hidden_size \(50\)"),
        ({"max_len": 0}, r"max_len \(--max-len\): must be >= 1"),
        ({"loss": "mse"}, r"loss \(--loss\)"),
    ],
)
def test_bad_values_name_their_key(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig.build(values)


def test_missing_and_malformed_files_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        TrainConfig.from_yaml(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        TrainConfig.from_yaml(bad)


def test_the_defaults_are_the_recommended_recipe() -> None:
    """`recsys train` with no config trains exactly what recommended.yaml spells out."""
    recommended = next(p for p in CONFIGS if p.name == "recommended.yaml")
    assert TrainConfig.from_yaml(recommended) == TrainConfig()
