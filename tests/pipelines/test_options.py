"""Flags built from a config: YAML scalars, ``none`` kept where it is a real choice, text kept as
text, sections filled from flat flags, errors naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.options import build_config, config_fields, parse_flag_value
from recsys.errors import ConfigError
from recsys.training import TrainConfig
from serving.config import ServeConfig

FIELDS = {name: field for name, field, _ in config_fields(TrainConfig)}


def test_flag_text_becomes_a_yaml_scalar() -> None:
    assert parse_flag_value("4", FIELDS["hidden_size"]) == 4
    assert parse_flag_value("0.5", FIELDS["dropout"]) == 0.5
    assert parse_flag_value("true", FIELDS["norm_first"]) is True
    assert parse_flag_value("none", FIELDS["max_minutes"]) is None  # a nullable number


def test_text_stays_text() -> None:
    namespace = dict((n, f) for n, f, _ in config_fields(ServeConfig))["namespace"]
    assert parse_flag_value("123", namespace) == "123"


def test_none_stays_a_word_where_it_is_a_choice() -> None:
    config = build_config(
        TrainConfig, None, {"scheduler": "none", "max_minutes": None, "loss": "bce"}
    )
    assert isinstance(config, TrainConfig)
    assert config.scheduler == "none"
    assert config.max_minutes is None
    assert parse_flag_value("none", FIELDS["scheduler"]) == "none"


def test_a_word_that_is_no_choice_is_refused_with_its_flag() -> None:
    with pytest.raises(ConfigError, match="--scheduler"):
        build_config(TrainConfig, None, {"scheduler": "linear"})


def test_flat_flags_fill_the_model_section_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  hidden_size: 32\n  n_blocks: 1\nloss: bce\n")
    config = build_config(TrainConfig, path, {"hidden_size": 16})
    assert isinstance(config, TrainConfig)
    assert (config.model.hidden_size, config.model.n_blocks, config.loss) == (16, 1, "bce")


def test_a_section_check_names_its_fields() -> None:
    with pytest.raises(ConfigError, match=r"n_heads \(3\) must divide hidden_size \(50\)"):
        build_config(TrainConfig, None, {"hidden_size": 50, "n_heads": 3})
