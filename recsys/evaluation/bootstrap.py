"""Bootstrap confidence intervals over users, and paired differences between two scorers.

Resampling is vectorised: each batch of resamples is a matrix of per-user draw counts, and the
resampled means of every metric are one matrix product. The same seed gives the same resamples
for the same number of users, so intervals of different scorers (and their paired difference)
use identical resamples.

Shape letters: R resamples, M metrics, N users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.errors import ConfigError, DataError

_CELLS_PER_CHUNK = 1 << 22
"""Resample-by-user cells held at once (about 32 MB of float64)."""


@dataclass(frozen=True)
class Interval:
    """A point estimate (the mean over all users) and its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        """For a difference: the interval lies entirely above or below 0."""
        return self.low > 0.0 or self.high < 0.0

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.estimate, "ci_low": self.low, "ci_high": self.high}


def bootstrap_means(values: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Means of ``n_resamples`` resamples of users (with replacement): [M, N] -> [R, M].

    >>> bootstrap_means(np.array([[1.0, 1.0, 1.0]]), n_resamples=2).tolist()
    [[1.0], [1.0]]
    """
    if n_resamples < 1:
        raise ConfigError(f"--resamples must be >= 1, got {n_resamples}")
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))  # [M, N]
    num_users = values.shape[1]
    if num_users == 0:
        raise DataError("no users to bootstrap over")
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS_PER_CHUNK // num_users)
    means = np.empty((n_resamples, values.shape[0]))  # [R, M]
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        draws = rng.integers(0, num_users, size=(size, num_users))  # [r, N]
        flat = draws + (np.arange(size) * num_users)[:, None]  # [r, N], one bin range per row
        counts = np.bincount(flat.ravel(), minlength=size * num_users).reshape(size, num_users)
        means[start : start + size] = counts @ values.T / num_users  # [r, M]
    return means


def bootstrap_intervals(
    values: np.ndarray, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> list[Interval]:
    """Percentile intervals of the mean of each row of ``values`` ([M, N] or [N]).

    >>> [round(x, 2) for x in vars(bootstrap_intervals(np.array([0.0, 1.0] * 50))[0]).values()]
    [0.5, 0.4, 0.6]
    """
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"--confidence must be in (0, 1), got {confidence}")
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))  # [M, N]
    means = bootstrap_means(values, n_resamples, seed)  # [R, M]
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha], axis=0)  # [M], [M]
    estimates = values.mean(axis=1)  # [M]
    return [
        Interval(float(e), float(lo), float(hi))
        for e, lo, hi in zip(estimates, low, high, strict=True)
    ]


def metric_intervals(
    per_user: dict[str, np.ndarray],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """An interval for every per-user metric (all from the same resamples)."""
    names = list(per_user)
    if not names:
        return {}
    intervals = bootstrap_intervals(
        np.stack([per_user[name] for name in names]), n_resamples, confidence, seed
    )
    return dict(zip(names, intervals, strict=True))


def paired_differences(
    first: dict[str, np.ndarray],
    second: dict[str, np.ndarray],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """``first - second`` per metric, with an interval from resampling the same users for both.

    Both must hold per-user values for the same users in the same order; metrics present in only
    one are skipped.

    >>> a = {"hr@10": np.array([1.0, 1.0, 0.0, 1.0])}
    >>> b = {"hr@10": np.array([0.0, 1.0, 0.0, 0.0])}
    >>> paired_differences(a, b)["hr@10"].estimate
    0.5
    """
    names = [name for name in first if name in second]
    for name in names:
        if first[name].shape != second[name].shape:
            raise DataError(
                f"paired comparison needs the same users: {name} has {first[name].shape[0]} "
                f"and {second[name].shape[0]} values"
            )
    differences = {name: first[name] - second[name] for name in names}
    return metric_intervals(differences, n_resamples, confidence, seed)
