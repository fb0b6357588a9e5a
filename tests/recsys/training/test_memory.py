"""The memory check before training: what a run at a million items costs by part, which
configurations are refused, and that the refusal names the setting to change."""

from __future__ import annotations

import pytest

from recsys.errors import ConfigError
from recsys.training.config import TrainConfig
from recsys.training.memory import (
    MemoryEstimate,
    auto_eval_batch_size,
    check_fits,
    estimate_training_memory,
)

MILLION = 1_000_000
GIB = 1 << 30


def _resolved(**values: object) -> TrainConfig:
    base: dict[str, object] = {
        "max_len": 50,
        "dropout": 0.2,
        "loss": "sampled_softmax",
        "num_negatives": 4096,
        "eval_batch_size": 1024,
    }
    return TrainConfig.build({**base, **values})


def _estimate(config: TrainConfig, num_items: int, users: int = MILLION) -> MemoryEstimate:
    backbone = config.model_config_for(num_items)
    eval_batch = auto_eval_batch_size(num_items, 1024)
    return estimate_training_memory(config, backbone, eval_batch, users)


def test_the_default_recipe_at_a_million_items_fits_a_small_machine() -> None:
    estimate = _estimate(_resolved(), MILLION)
    # Embedding 1M x 64, four float32 copies (weight, gradient, two AdamW moments): ~1 GiB.
    assert 0.9 * GIB < estimate.parameters < 1.1 * GIB
    assert estimate.peak < 2 * GIB
    check_fits(estimate, 8 * GIB, "this machine")


def test_the_full_softmax_at_a_million_items_is_refused_naming_the_loss() -> None:
    estimate = _estimate(_resolved(loss="ce"), MILLION)
    # 128 users x 50 positions x 1M items, three float32 copies.
    assert estimate.loss == 128 * 50 * MILLION * 4 * 3
    with pytest.raises(ConfigError, match=r"largest part is the loss .*--loss sampled_softmax"):
        check_fits(estimate, 24 * GIB, "this machine")


def test_validation_scores_stay_bounded_as_the_catalogue_grows() -> None:
    assert auto_eval_batch_size(23_715, 1024) == 707
    assert auto_eval_batch_size(1_000, 1024) == 1024
    assert auto_eval_batch_size(10 * MILLION, 1024) == 16
    small, large = _estimate(_resolved(), 100_000), _estimate(_resolved(), MILLION)
    assert large.validation <= 1.1 * small.validation
    asked = _estimate(_resolved(eval_batch_size=1024), MILLION)
    backbone = _resolved().model_config_for(MILLION)
    explicit = estimate_training_memory(_resolved(), backbone, 4096, MILLION)
    assert explicit.validation > asked.validation
    with pytest.raises(ConfigError, match="--eval-batch-size"):
        check_fits(explicit, explicit.validation, "this machine")


def test_no_batch_is_counted_larger_than_the_data() -> None:
    few = _estimate(_resolved(batch_size=100_000), 1_000, users=50)
    same = _estimate(_resolved(batch_size=50), 1_000, users=50)
    assert few == same


def test_a_run_that_fits_is_not_refused_and_the_estimate_reads_in_gib() -> None:
    estimate = _estimate(_resolved(), 10_000, users=10_000)
    check_fits(estimate, estimate.peak * 2, "this machine")
    parts = estimate.as_dict()
    assert set(parts) == {
        "parameters_gib", "loss_gib", "activations_gib", "validation_gib", "peak_gib",
    }  # fmt: skip
    assert parts["peak_gib"] == pytest.approx(estimate.peak / GIB, abs=1e-3)
