"""``recsys train`` flag values: YAML scalars, with ``none`` kept where it is a real choice."""

from __future__ import annotations

import pytest

from pipelines.train import build_config, parse_override
from recsys.errors import ConfigError


def test_flag_text_becomes_a_yaml_scalar() -> None:
    assert parse_override("4", "hidden_size") == 4
    assert parse_override("0.5", "dropout") == 0.5
    assert parse_override("true", "norm_first") is True
    assert parse_override("none", "max_minutes") is None  # a nullable number: none is None


def test_none_stays_a_word_where_it_is_a_choice() -> None:
    config = build_config(None, {"scheduler": "none", "max_minutes": "None", "loss": "bce"})
    assert config.scheduler == "none"
    assert config.max_minutes is None
    assert build_config(None, {"scheduler": "cosine"}).scheduler == "cosine"


def test_a_word_that_is_no_choice_is_refused_with_its_flag() -> None:
    with pytest.raises(ConfigError, match="--scheduler"):
        build_config(None, {"scheduler": "linear"})
