"""Synthetic interaction logs with learnable structure: the project's default demo data.

``generate_log`` draws a log of ``(user_id, item_id, timestamp)`` events that looks like real
implicit feedback where it matters for a sequential recommender:

* **Popularity** is power-law: the item of popularity rank ``r`` (1-based) has weight
  ``r ** -popularity_exponent``. Ranks are a random permutation of the ids, so item 1 is not
  the most popular item.
* **Genres**: items are split into ``n_genres`` clusters of (almost) equal size, and every user
  has one favourite genre.
* **Sequential dependence**: every item has ``n_successors`` fixed successor items, drawn from
  its own genre (never the item itself) with weights ``popularity ** successor_popularity``, so
  popular items are likelier successors but each item keeps its own list. Slot ``j`` (0-based)
  of that list has weight ``(j + 1) ** -successor_exponent``. At every step after a user's
  first, with probability ``p_follow`` the next item is one of the current item's successors;
  otherwise it is a *background* draw: with probability ``p_genre`` by popularity within the
  user's favourite genre, else by global popularity. First items are always background draws.
  So the next item is far more predictable from the current one than from popularity alone.
* **Activity** is long-tailed: user ``u`` gets weight ``exp(length_sigma * z_u)`` with standard
  normal ``z_u``; every user has one event and the other ``n_events - n_users`` are shared out by
  one multinomial draw over those weights, so the lengths add up to exactly ``n_events``.
* **Time**: each user starts at a uniform second in
  ``[start_timestamp, start_timestamp + start_window_seconds)``; each later event follows the
  previous one after ``1 + floor(Exponential(mean_gap_seconds))`` seconds, so a user's times
  strictly increase.

Everything is vectorised numpy. The only Python loop runs over sequence positions (the chain of
successor steps), handling every user still active at that position at once. The catalogue
(popularity, genres, successors) depends only on ``seed`` and the item-side knobs, so logs of
different sizes drawn with the same seed share one catalogue.

``write_log`` saves a log as Parquet or CSV, atomically.
"""

import math
import numbers
import os
import uuid
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from recsys.data.columns import ITEM_ID, TIMESTAMP, USER_ID
from recsys.errors import ConfigError

__all__ = ["START_2024", "NextItemTruth", "SynthConfig", "generate_log", "write_log"]

START_2024: Final = 1_704_067_200
"""2024-01-01T00:00:00Z in epoch seconds: the default start of the users' first events."""
SECONDS_PER_DAY: Final = 86_400

_MAX_ID: Final = 2**31 - 1
"""Largest user or item count: indices are held as int32 while generating."""
_MAX_MEAN_GAP: Final = 1e9
"""Largest mean gap in seconds (about 32 years): keeps timestamps far from int64 overflow."""
_PARQUET_SUFFIXES: Final = (".parquet", ".pq")
_CSV_SUFFIXES: Final = (".csv",)

_IntArray = npt.NDArray[np.int64]
_Int32Array = npt.NDArray[np.int32]
_FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SynthConfig:
    """Size, seed and structure knobs of a synthetic log; validated on construction.

    Raises:
        ConfigError: a field has the wrong type or an out-of-range value; the message names it.
    """

    n_users: int = 2_000
    """Number of users; ids are ``1..n_users`` and every user has at least one event."""
    n_items: int = 500
    """Number of items (at least 2); ids are ``1..n_items``. Rarely drawn items may not appear."""
    n_events: int = 40_000
    """Exact number of rows; at least ``n_users``."""
    seed: int = 0
    """Seed of every random draw (a non-negative integer): same config, same frame."""
    popularity_exponent: float = 1.0
    """Zipf exponent of item popularity: 0 is uniform, larger is more skewed."""
    n_genres: int = 20
    """Number of item clusters (capped at ``n_items``); each user has one favourite."""
    p_genre: float = 0.5
    """Probability that a background draw comes from the user's favourite genre."""
    n_successors: int = 4
    """Size of each item's fixed successor list (duplicates allowed)."""
    successor_exponent: float = 1.0
    """Skew of the successor slots: slot ``j`` has weight ``(j + 1) ** -successor_exponent``."""
    successor_popularity: float = 0.5
    """Power of popularity used as the weight when drawing successor lists: 1 draws successors
    by popularity, 0 uniformly within the genre (more item-specific transitions)."""
    p_follow: float = 0.65
    """Probability that the next item is a successor of the current one."""
    length_sigma: float = 1.0
    """Log-normal sigma of user activity: 0 gives near-equal lengths, larger a longer tail."""
    mean_gap_seconds: float = 43_200.0
    """Mean of the exponential gap between a user's consecutive events (12 hours)."""
    start_timestamp: int = START_2024
    """Earliest possible first event, in epoch seconds."""
    start_window_seconds: int = 365 * SECONDS_PER_DAY
    """Users' first events are spread uniformly over this many seconds after the start."""

    def __post_init__(self) -> None:
        """Check types and ranges; raise ``ConfigError`` naming the first bad field."""
        int_minimums = {
            "n_users": 1,
            "n_items": 2,
            "n_events": 1,
            "seed": 0,
            "n_genres": 1,
            "n_successors": 1,
            "start_timestamp": 0,
            "start_window_seconds": 1,
        }
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name in int_minimums:
                _check_int(field.name, value, int_minimums[field.name])
            else:
                _check_real(field.name, value)
        for name in ("n_users", "n_items"):
            if getattr(self, name) > _MAX_ID:
                raise ConfigError(f"{name} ({getattr(self, name)}) must be <= {_MAX_ID}")
        if self.n_events < self.n_users:
            raise ConfigError(
                f"n_events ({self.n_events}) must be >= n_users ({self.n_users}): "
                "every user gets at least one event"
            )
        for name in ("p_follow", "p_genre"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} ({value}) must be in [0, 1]")
        for name in (
            "popularity_exponent",
            "successor_exponent",
            "successor_popularity",
            "length_sigma",
        ):
            value = getattr(self, name)
            if value < 0.0:
                raise ConfigError(f"{name} ({value}) must be >= 0")
        if not 0.0 < self.mean_gap_seconds <= _MAX_MEAN_GAP:
            raise ConfigError(
                f"mean_gap_seconds ({self.mean_gap_seconds}) must be in (0, {_MAX_MEAN_GAP:g}]"
            )


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if int(value) < minimum:
        raise ConfigError(f"{name} ({value}) must be >= {minimum}")


def _check_real(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(float(value)):
        raise ConfigError(f"{name} ({value}) must be finite")


@dataclass(frozen=True)
class _GroupSampler:
    """Draws item indices (0-based) in proportion to fixed weights, within a genre or overall.

    Group ``g < n_genres`` is a genre; group ``n_genres`` is the whole catalogue.
    """

    order: _Int32Array
    """Item indices grouped by genre: ``[n_items]``."""
    cumulative: _FloatArray
    """Running weight along ``order``: ``[n_items]``."""
    lo: _IntArray
    """First position in ``order`` of each group: ``[n_genres + 1]``."""
    hi: _IntArray
    """One past the last position in ``order`` of each group: ``[n_genres + 1]``."""
    mass_before: _FloatArray
    """Weight before each group's first position: ``[n_genres + 1]``."""
    mass: _FloatArray
    """Total weight of each group: ``[n_genres + 1]``."""

    @classmethod
    def build(
        cls, weight: npt.NDArray[np.floating[Any]], genre: _Int32Array, n_genres: int
    ) -> "_GroupSampler":
        """Sampler for items with ``weight`` ``[n_items]`` and ``genre`` ``[n_items]``."""
        order = np.argsort(genre, kind="stable").astype(np.int32)
        cumulative = np.cumsum(weight[order])
        mass_at = np.concatenate(([0.0], cumulative))  # weight before position p: [n_items + 1]
        size = np.bincount(genre, minlength=n_genres)
        hi = np.append(np.cumsum(size), len(genre)).astype(np.int64)
        lo = np.append(np.cumsum(size) - size, 0).astype(np.int64)
        return cls(order, cumulative, lo, hi, mass_at[lo], mass_at[hi] - mass_at[lo])

    def sample(self, group: npt.NDArray[np.integer[Any]], uniform: _FloatArray) -> _Int32Array:
        """One item per entry of ``group``, using ``uniform`` draws in [0, 1) of the same shape."""
        target = self.mass_before[group] + uniform * self.mass[group]
        position = np.searchsorted(self.cumulative, target, side="right")
        # Rounding can land one step outside the group: pull it back in.
        np.clip(position, self.lo[group], self.hi[group] - 1, out=position)
        items: _Int32Array = self.order[position]
        return items


@dataclass(frozen=True)
class _Catalog:
    """Item-side structure; item indices are 0-based (id = index + 1)."""

    n_genres: int
    popularity: _FloatArray
    """Popularity weight of each item: ``[n_items]``."""
    genre: _Int32Array
    """Genre of each item: ``[n_items]``."""
    popular: _GroupSampler
    """Draws by popularity."""
    successors: _Int32Array
    """Successor lists, flattened: item ``i``'s slot ``j`` is at ``i * n_successors + j``."""


def _build_catalog(config: SynthConfig, rng: np.random.Generator) -> _Catalog:
    n_items = config.n_items
    n_genres = min(config.n_genres, n_items)
    rank = rng.permutation(n_items)  # popularity rank (0 = most popular) of each item
    popularity = (rank + 1.0) ** -config.popularity_exponent  # [n_items]
    genre = np.empty(n_items, dtype=np.int32)
    genre[rng.permutation(n_items)] = np.arange(n_items, dtype=np.int32) % n_genres
    popular = _GroupSampler.build(popularity, genre, n_genres)
    attractive = _GroupSampler.build(
        (rank + 1.0) ** -(config.popularity_exponent * config.successor_popularity),
        genre,
        n_genres,
    )
    k = config.n_successors
    successors = attractive.sample(np.repeat(genre, k), rng.random(n_items * k))
    owner = np.repeat(np.arange(n_items, dtype=np.int32), k)
    own = successors == owner
    if own.any():
        # No item follows itself: take the item after it in genre order instead.
        position_of = np.empty(n_items, dtype=np.int64)
        position_of[popular.order] = np.arange(n_items)
        successors[own] = popular.order[(position_of[owner[own]] + 1) % n_items]
    return _Catalog(
        n_genres=n_genres,
        popularity=np.asarray(popularity, dtype=np.float64),
        genre=genre,
        popular=popular,
        successors=successors,
    )


def _sequence_lengths(config: SynthConfig, rng: np.random.Generator) -> _IntArray:
    """Events per user: each >= 1, long-tailed, summing to exactly ``n_events``."""
    weight = np.exp(config.length_sigma * rng.standard_normal(config.n_users))
    weight /= weight.sum()
    extra = rng.multinomial(config.n_events - config.n_users, weight)
    return (extra + 1).astype(np.int64)


def generate_log(config: SynthConfig) -> pl.DataFrame:
    """Draw a synthetic interaction log as described in the module docstring.

    Returns:
        Columns ``user_id``, ``item_id``, ``timestamp`` (all ``Int64``; timestamps in epoch
        seconds), exactly ``config.n_events`` rows, every user ``1..n_users`` present, item ids
        within ``1..n_items``, rows sorted by timestamp (ties in a fixed, seed-determined order).
        The same config always gives the same frame.
    """
    catalog_seed, user_seed, event_seed, time_seed = np.random.SeedSequence(config.seed).spawn(4)
    catalog = _build_catalog(config, np.random.default_rng(catalog_seed))

    user_rng = np.random.default_rng(user_seed)
    lengths = _sequence_lengths(config, user_rng)
    favourite = user_rng.integers(0, catalog.n_genres, config.n_users, dtype=np.int32)
    start = config.start_timestamp + user_rng.integers(
        0, config.start_window_seconds, config.n_users, dtype=np.int64
    )

    # Position-major layout: all users' first events, then all second events, ... Users are
    # ranked by length (longest first), so the users active at position t are ranks
    # 0..n_active[t]-1 and the events of position t fill [offsets[t], offsets[t + 1]).
    by_length = np.argsort(-lengths, kind="stable")  # user index of each rank: [U]
    n_active = np.cumsum(np.bincount(lengths)[::-1])[::-1][1:]  # [max_len]
    offsets = np.concatenate(([0], np.cumsum(n_active)))  # [max_len + 1]
    n_events = config.n_events
    rank = np.arange(n_events, dtype=np.int64) - np.repeat(offsets[:-1], n_active)  # [N]
    user = by_length[rank].astype(np.int32)  # [N]
    del rank

    event_rng = np.random.default_rng(event_seed)
    follow = event_rng.random(n_events, dtype=np.float32) < config.p_follow  # [N]
    follow[: config.n_users] = False  # first events have nothing to follow
    items = np.empty(n_events, dtype=np.int32)  # [N]
    background = np.flatnonzero(~follow)
    in_genre = event_rng.random(len(background), dtype=np.float32) < config.p_genre
    group = np.where(in_genre, favourite[user[background]], catalog.n_genres)
    items[background] = catalog.popular.sample(group, event_rng.random(len(background)))
    del background, in_genre, group

    # Successor steps: the same user's previous event sits n_active[t - 1] slots earlier.
    followed = np.flatnonzero(follow)  # sorted event indices: [F]
    del follow
    slot_weight = np.arange(1, config.n_successors + 1, dtype=np.float64)
    slot_cumulative = np.cumsum(slot_weight**-config.successor_exponent)
    slot = np.searchsorted(
        slot_cumulative,
        event_rng.random(len(followed)) * slot_cumulative[-1],
        side="right",
    )
    np.minimum(slot, config.n_successors - 1, out=slot)
    chunk_end = np.searchsorted(followed, offsets[1:], side="left")  # [max_len]
    k = config.n_successors
    for t in range(1, len(n_active)):
        lo, hi = chunk_end[t - 1], chunk_end[t]
        idx = followed[lo:hi]
        previous = items[idx - n_active[t - 1]].astype(np.int64)
        items[idx] = catalog.successors[previous * k + slot[lo:hi]]
    del followed, slot

    time_rng = np.random.default_rng(time_seed)
    timestamp = np.empty(n_events, dtype=np.int64)  # [N]
    timestamp[: config.n_users] = start[by_length]
    gap = time_rng.exponential(config.mean_gap_seconds, n_events).astype(np.int64) + 1  # [N]
    for t in range(1, len(n_active)):
        a, s, p = n_active[t], offsets[t], offsets[t - 1]
        np.add(timestamp[p : p + a], gap[s : s + a], out=timestamp[s : s + a])
    del gap

    frame = pl.DataFrame(
        {USER_ID: user, ITEM_ID: items, TIMESTAMP: timestamp},
        schema={USER_ID: pl.Int32, ITEM_ID: pl.Int32, TIMESTAMP: pl.Int64},
    )
    # A stable sort of the position-major layout: equal times keep a fixed, seed-determined order.
    return frame.sort(TIMESTAMP, maintain_order=True).select(
        (pl.col(USER_ID).cast(pl.Int64) + 1).alias(USER_ID),
        (pl.col(ITEM_ID).cast(pl.Int64) + 1).alias(ITEM_ID),
        pl.col(TIMESTAMP),
    )


@dataclass(frozen=True)
class NextItemTruth:
    """The generator's own next-item distribution for a log drawn with ``config``: given a user
    and its newest item, the exact probability of every item coming next.

    This is the Bayes-optimal scorer of a synthetic log, the ceiling no model can pass on it:
    benchmarks rank with it to show how much of the log's structure a model and a baseline
    capture (a first-order Markov chain already captures the successor steps; only the user's
    favourite genre, in the background draws, is beyond it).
    """

    config: SynthConfig
    catalog: _Catalog
    favourite: _Int32Array
    """Favourite genre of each user (0-based index): ``[n_users]``."""

    @classmethod
    def of(cls, config: SynthConfig) -> "NextItemTruth":
        """Rebuild the catalogue and the users' genres exactly as ``generate_log`` draws them."""
        catalog_seed, user_seed, _, _ = np.random.SeedSequence(config.seed).spawn(4)
        catalog = _build_catalog(config, np.random.default_rng(catalog_seed))
        user_rng = np.random.default_rng(user_seed)
        _sequence_lengths(config, user_rng)  # drawn first, as in generate_log
        favourite = user_rng.integers(0, catalog.n_genres, config.n_users, dtype=np.int32)
        return cls(config, catalog, favourite)

    def probabilities(
        self, user_ids: npt.NDArray[np.integer[Any]], newest_item_ids: npt.NDArray[np.integer[Any]]
    ) -> _FloatArray:
        """``[n]`` user ids and ids of their newest items (1-based; 0: no event yet) ->
        ``[n, n_items + 1]`` probabilities indexed by item id (column 0, no item, is 0).

        >>> truth = NextItemTruth.of(SynthConfig(n_users=5, n_items=30, n_events=50))
        >>> p = truth.probabilities(np.array([1, 2]), np.array([7, 0]))
        >>> p.shape, bool(np.allclose(p.sum(axis=1), 1.0)), float(p[:, 0].max())
        ((2, 31), True, 0.0)
        """
        config, catalog = self.config, self.catalog
        users = np.asarray(user_ids, dtype=np.int64) - 1
        newest = np.asarray(newest_item_ids, dtype=np.int64)
        n_items = config.n_items
        popularity = catalog.popularity
        in_genre = catalog.genre[None, :] == self.favourite[users][:, None]  # [n, n_items]
        genre_mass = np.bincount(catalog.genre, weights=popularity, minlength=catalog.n_genres)
        favourite_mass = genre_mass[self.favourite[users]][:, None]  # [n, 1]
        background = config.p_genre * np.where(in_genre, popularity, 0.0) / favourite_mass
        background += (1.0 - config.p_genre) * popularity / popularity.sum()  # [n, n_items]
        has_newest = newest > 0
        follow = np.where(has_newest, config.p_follow, 0.0)[:, None]
        out = np.zeros((len(users), n_items + 1))
        out[:, 1:] = (1.0 - follow) * background
        k = config.n_successors
        slot_weight = np.arange(1, k + 1, dtype=np.float64) ** -config.successor_exponent
        slot_weight /= slot_weight.sum()
        rows = np.flatnonzero(has_newest)
        successor_ids = catalog.successors.reshape(n_items, k)[newest[rows] - 1] + 1  # [m, k]
        for slot in range(k):  # a successor may hold several slots: their weights add up
            np.add.at(out, (rows, successor_ids[:, slot]), config.p_follow * slot_weight[slot])
        return out


def write_log(frame: pl.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` atomically, as Parquet (``.parquet``/``.pq``) or CSV (``.csv``).

    The frame goes to a hidden temporary file beside ``path``, is flushed to disk, then replaces
    ``path`` in one step; parent folders are created. CSV files have a header row.

    Raises:
        ConfigError: the suffix of ``path`` is none of the supported ones.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _PARQUET_SUFFIXES + _CSV_SUFFIXES:
        supported = ", ".join(_PARQUET_SUFFIXES + _CSV_SUFFIXES)
        raise ConfigError(
            f"log file suffix {path.suffix!r} of {str(path)!r} is not supported: use {supported}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        with staging.open("xb") as handle:
            if suffix in _PARQUET_SUFFIXES:
                frame.write_parquet(handle)
            else:
                frame.write_csv(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
