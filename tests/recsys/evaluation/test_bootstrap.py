"""Bootstrap intervals: seeded, narrowing with more users, and paired differences."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from recsys.errors import ConfigError, DataError
from recsys.evaluation import (
    bootstrap_intervals,
    bootstrap_means,
    metric_intervals,
    paired_differences,
)


def _hits(num_users: int, rate: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(num_users) < rate).astype(np.float64)


def test_interval_holds_the_mean_and_is_seeded() -> None:
    values = _hits(500, 0.3)
    first = bootstrap_intervals(values, n_resamples=500, seed=1)[0]
    assert first.low < first.estimate < first.high
    assert first.estimate == pytest.approx(values.mean())
    assert bootstrap_intervals(values, n_resamples=500, seed=1)[0] == first
    assert not np.array_equal(bootstrap_means(values, 50, seed=1), bootstrap_means(values, 50, 2))


def test_interval_width_shrinks_with_more_users() -> None:
    widths = []
    for num_users in (100, 1_000, 10_000):
        interval = bootstrap_intervals(_hits(num_users, 0.3), n_resamples=1000)[0]
        widths.append(interval.high - interval.low)
    assert widths[0] > widths[1] > widths[2]
    # The normal approximation: 2 * 1.96 * sqrt(p (1 - p) / n).
    assert widths[2] == pytest.approx(2 * 1.96 * np.sqrt(0.21 / 10_000), rel=0.15)


def test_constant_values_have_a_zero_width_interval() -> None:
    interval = bootstrap_intervals(np.full(50, 0.25))[0]
    assert (interval.low, interval.estimate, interval.high) == pytest.approx((0.25, 0.25, 0.25))


def test_resampled_means_of_several_metrics_share_resamples() -> None:
    values = _hits(300, 0.5)
    means = bootstrap_means(np.stack([values, 2 * values]), n_resamples=50)
    assert means.shape == (50, 2)
    assert np.allclose(means[:, 1], 2 * means[:, 0])  # the same users drawn for both rows


def test_chunked_resampling_equals_the_definition() -> None:
    values = _hits(40, 0.5)
    rng = np.random.default_rng(3)
    draws = rng.integers(0, 40, size=(20, 40))
    assert np.allclose(bootstrap_means(values, n_resamples=20, seed=3)[:, 0], values[draws].mean(1))


def test_paired_difference_detects_a_real_gap_and_not_a_fake_one() -> None:
    baseline = _hits(2_000, 0.30, seed=1)
    better = np.maximum(baseline, _hits(2_000, 0.10, seed=2))  # strictly more hits, same users
    gap = paired_differences({"hr@10": better}, {"hr@10": baseline}, n_resamples=1000)["hr@10"]
    assert gap.estimate == pytest.approx(better.mean() - baseline.mean())
    assert gap.excludes_zero and gap.low > 0
    same = paired_differences({"hr@10": baseline}, {"hr@10": baseline.copy()})["hr@10"]
    assert (same.low, same.high) == (0.0, 0.0)
    noise = paired_differences({"hr@10": _hits(2_000, 0.3, 4)}, {"hr@10": _hits(2_000, 0.3, 5)})
    assert not noise["hr@10"].excludes_zero


def test_paired_ci_is_narrower_than_unpaired_for_correlated_scorers() -> None:
    baseline = _hits(1_000, 0.4, seed=1)
    model = np.maximum(baseline, _hits(1_000, 0.05, seed=2))
    paired = paired_differences({"m": model}, {"m": baseline})["m"]
    separate = metric_intervals({"model": model, "baseline": baseline})
    unpaired_half_width = np.hypot(
        separate["model"].high - separate["model"].low,
        separate["baseline"].high - separate["baseline"].low,
    )
    assert paired.high - paired.low < unpaired_half_width


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: paired_differences({"hr@10": np.ones(3)}, {"hr@10": np.ones(4)}),
            DataError,
            "same users",
        ),
        (lambda: bootstrap_means(np.ones(3), n_resamples=0), ConfigError, "--resamples"),
        (lambda: bootstrap_intervals(np.ones(3), confidence=1.5), ConfigError, "--confidence"),
        (lambda: bootstrap_means(np.ones((1, 0))), DataError, "no users"),
    ],
    ids=["paired-users", "resamples", "confidence", "no-users"],
)
def test_bad_inputs_are_refused(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call()
