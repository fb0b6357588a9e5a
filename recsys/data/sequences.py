"""Per-user item sequences from a prepared dataset, as flat arrays, and the batches cut from them.

Shared by training (windows, the length-bucketed sampler), evaluation (held-out targets) and
export (verification batches), so it lives in the lowest layer. No Lightning here.

Shape letters: B batch, L batch length (the longest sequence in the batch, <= max_len),
S longest history in the batch (for excluding seen items).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from recsys.data import columns as C
from recsys.data.prepared import PreparedDataset
from recsys.errors import DataError


@dataclass(frozen=True)
class FlatSequences:
    """Variable-length sequences stored as one array plus offsets: row i is
    ``items[offsets[i]:offsets[i + 1]]``."""

    items: np.ndarray
    offsets: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, index: int) -> np.ndarray:
        return self.items[self.offsets[index] : self.offsets[index + 1]]

    def select(self, rows: np.ndarray) -> FlatSequences:
        """The sequences of ``rows`` (row indices), in that order."""
        lengths = self.lengths[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        starts = np.repeat(self.offsets[:-1][rows] - offsets[:-1], lengths)  # [total]
        return FlatSequences(self.items[starts + np.arange(offsets[-1])], offsets)


@dataclass(frozen=True)
class HeldOutTargets:
    """One target per user: the first event of a split, with everything before it as history."""

    user_indices: np.ndarray
    histories: FlatSequences
    targets: np.ndarray

    def sample(self, users: int, seed: int) -> HeldOutTargets:
        """A seeded uniform sample of ``users`` users without replacement, in user order;
        all of them when there are no more than ``users``."""
        if users < 1:
            raise DataError(f"a sample needs at least one user, got {users}")
        if users >= len(self.targets):
            return self
        rows = np.sort(np.random.default_rng(seed).choice(len(self.targets), users, replace=False))
        return HeldOutTargets(
            self.user_indices[rows], self.histories.select(rows), self.targets[rows]
        )


def training_sequences(dataset: PreparedDataset) -> FlatSequences:
    """Each user's training-split items in chronological order (users without any are skipped)."""
    return _flat(dataset.split_frame(C.TRAIN))


def held_out_targets(dataset: PreparedDataset, split: str) -> HeldOutTargets:
    """For every user with an event in ``split``: its first such event and all earlier events.

    With leave-one-out this is the paper's protocol (history = training, plus the validation
    item for the test); with a temporal split it is the first event after the cut-off.
    """
    if split not in (C.VALIDATION, C.TEST):
        raise DataError(f"held-out targets come from 'validation' or 'test', not {split!r}")
    frame = dataset.interactions
    first = (
        frame.filter(pl.col(C.SPLIT) == split)
        .group_by(C.USER_IDX)
        .agg(pl.col(C.POSITION).min().alias("target_position"))
    )
    joined = frame.join(first, on=C.USER_IDX, how="inner")
    history = joined.filter(pl.col(C.POSITION) < pl.col("target_position")).sort(
        C.USER_IDX, C.POSITION
    )
    targets = (
        joined.filter(pl.col(C.POSITION) == pl.col("target_position"))
        .select(C.USER_IDX, C.ITEM_IDX)
        .sort(C.USER_IDX)
    )
    with_history = history.get_column(C.USER_IDX).unique().sort()
    targets = targets.filter(pl.col(C.USER_IDX).is_in(with_history.implode()))
    return HeldOutTargets(
        user_indices=targets.get_column(C.USER_IDX).to_numpy(),
        histories=_flat(history),
        targets=targets.get_column(C.ITEM_IDX).to_numpy().astype(np.int64),
    )


def _flat(frame: pl.DataFrame) -> FlatSequences:
    ordered = frame.sort(C.USER_IDX, C.POSITION)
    lengths = ordered.group_by(C.USER_IDX, maintain_order=True).len().get_column("len")
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths.to_numpy(), out=offsets[1:])
    return FlatSequences(ordered.get_column(C.ITEM_IDX).to_numpy().astype(np.int64), offsets)


def right_aligned(rows: Sequence[Sequence[int] | np.ndarray], width: int) -> torch.Tensor:
    """Left-pad each row with 0 to ``width``: an int64 [B, width] tensor, newest item last.

    This is the layout every model input uses (training windows, evaluation, the exported
    module); rows longer than ``width`` keep their last (newest) items.
    """
    batch = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        tail = row[-width:] if width else row[:0]
        batch[i, width - len(tail) :] = tail
    return torch.from_numpy(batch)


def right_aligned_rows(rows: Sequence[Sequence[int]], width: int) -> list[list[int]]:
    """``right_aligned`` as plain lists, for callers that must not hold tensors (the server's
    forward task takes lists only; see ``serving.model.forward_task``)."""
    if width == 0:
        return [[] for _ in rows]
    return [[0] * (width - len(row[-width:])) + list(row[-width:]) for row in rows]


def training_batch(
    sequences: FlatSequences, indices: list[int], max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-item targets for the given users, trimmed to the batch's longest window.

    Each user contributes the last ``max_len + 1`` items: inputs = all but the last, targets =
    all but the first (0 where there is no target). Returns two [B, L] tensors.
    """
    windows = [sequences.row(i)[-(max_len + 1) :] for i in indices]
    width = max(len(w) for w in windows) - 1
    inputs = right_aligned([w[:-1] for w in windows], width)
    targets = right_aligned([w[1:] for w in windows], width)
    return inputs, targets


def evaluation_batch(
    held_out: HeldOutTargets, indices: list[int], max_len: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """History windows [B, L], targets [B] and the full histories [B, S] (to exclude seen items)."""
    histories = [held_out.histories.row(i) for i in indices]
    width = min(max_len, max(len(h) for h in histories))
    inputs = right_aligned(histories, width)
    seen = right_aligned(histories, max(len(h) for h in histories))
    targets = torch.from_numpy(held_out.targets[indices])
    return inputs, targets, seen


class LengthBucketBatchSampler:
    """Batches of users with similar sequence lengths, so little padding is computed.

    Each epoch: sort by length with random tie-breaking, cut into batches, shuffle the batches.
    Deterministic given ``seed`` and the epoch; each iteration advances the epoch (start from
    another one with ``set_epoch``, e.g. when resuming). For data-parallel training every rank
    takes an equal share of the same batch order (``rank``/``world_size``).
    """

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        generator = np.random.default_rng(self.seed + self.epoch)
        if self.shuffle:
            jitter = generator.random(len(self.lengths))
            order = np.lexsort((jitter, self.lengths))
        else:
            order = np.argsort(self.lengths, kind="stable")
        batches = [
            order[start : start + self.batch_size].tolist()
            for start in range(0, len(order), self.batch_size)
        ]
        if self.shuffle:
            batches = [batches[i] for i in generator.permutation(len(batches))]
        per_rank = len(batches) // self.world_size if self.world_size > 1 else len(batches)
        return batches[self.rank :: self.world_size][:per_rank]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        self.epoch += 1  # each pass over the data is one epoch
        yield from batches

    def __len__(self) -> int:
        batches = -(-len(self.lengths) // self.batch_size)
        return batches // self.world_size if self.world_size > 1 else batches
