"""Flags built from a config: YAML scalars, ``none`` kept where it is a real choice, text kept as
text, sections filled from flat flags, errors naming the flag."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from pipelines.jobs.load_features import load_features
from pipelines.jobs.prepare import PrepareSettings
from pipelines.options import build_config, config_command, config_fields, parse_flag_value
from pipelines.service.recommend import RecommendSettings
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


def test_optional_text_stays_text() -> None:
    """An epoch-seconds cut-off is text for ``recsys prepare`` to parse, not a YAML integer."""
    cutoff = dict((n, f) for n, f, _ in config_fields(PrepareSettings))["test_cutoff"]
    assert parse_flag_value("1700000000", cutoff) == "1700000000"
    assert parse_flag_value("none", cutoff) is None


def test_a_field_without_default_is_a_required_flag() -> None:
    result = CliRunner().invoke(_single(load_features), ["--data", "d"])
    assert result.exit_code == 2
    assert "Missing option '--redis-url'" in result.output


def test_a_one_letter_field_also_answers_to_its_short_flag() -> None:
    seen: list[RecommendSettings] = []
    command = config_command(RecommendSettings, seen.append, [], doc="Record the settings.")
    result = CliRunner().invoke(_single(command), ["-k", "3", "--no-exclude-seen"])
    assert result.exit_code == 0, result.output
    assert (seen[0].k, seen[0].exclude_seen) == (3, False)


def _single(command: Callable[..., None]) -> Any:
    app = typer.Typer(add_completion=False)
    app.command()(command)
    return app
