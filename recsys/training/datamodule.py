"""``SequenceDataModule``: training windows and validation targets from a prepared dataset."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from recsys.data import (
    HeldOutTargets,
    LengthBucketBatchSampler,
    PreparedDataset,
    evaluation_batch,
    held_out_targets,
    training_batch,
    training_sequences,
)
from recsys.data import columns as C
from recsys.errors import DataError
from recsys.evaluation import interacted_keys, sample_negatives

TrainBatch = tuple[torch.Tensor, torch.Tensor]
EvalBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""(history windows [B, L], targets [B], then either the full histories [B, S] for full-ranking
validation or the candidates [B, 1 + n] (target first, then n negatives) for sampled validation)."""


class _Indices(Dataset[int]):
    """A dataset of row numbers; the collate function builds the tensors for a whole batch."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> int:
        return index


class SequenceDataModule(pl.LightningDataModule):
    """Right-aligned, length-bucketed training windows; validation on the split's first target.

    With ``val_negatives``, validation follows the sampled protocol: each validation user's
    target is ranked against that many items it never interacted with, drawn once (seeded) so
    every epoch is measured on the same candidates. With ``val_users``, validation ranks for a
    seeded uniform sample of that many users (the same every epoch), so that validating a
    million-user log does not cost hours.
    """

    def __init__(
        self,
        dataset: PreparedDataset,
        max_len: int,
        batch_size: int,
        eval_batch_size: int,
        seed: int,
        num_workers: int = 0,
        pin_memory: bool = False,
        val_negatives: int | None = None,
        val_users: int | None = None,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        all_training = training_sequences(dataset)
        keep = np.flatnonzero(all_training.lengths >= 2)  # one item alone has no target
        self.train_sequences = all_training.select(keep)
        if len(self.train_sequences) == 0:
            raise DataError("no user has two training events: nothing to learn from")
        self.validation = held_out_targets(dataset, C.VALIDATION)
        if len(self.validation.targets) == 0:
            raise DataError("the validation split is empty: nothing to select a model on")
        if val_users is not None:
            self.validation = self.validation.sample(val_users, seed)
        self.num_items = dataset.num_items
        self.val_candidates: np.ndarray | None = None  # [N, 1 + n]
        if val_negatives is not None:
            negatives = sample_negatives(
                interacted_keys(dataset, self.validation.user_indices),
                len(self.validation.targets),
                dataset.num_items,
                val_negatives,
                np.random.default_rng(seed),
            )
            self.val_candidates = np.column_stack([self.validation.targets, negatives])
        self.item_train_counts = torch.tensor(
            dataset.items.table.get_column("train_count").to_list(), dtype=torch.float64
        )

    @property
    def mean_targets_per_batch(self) -> float:
        """Target positions per training batch on average (each user has min(n - 1, max_len))."""
        targets = np.minimum(self.train_sequences.lengths - 1, self.max_len).sum()
        batches = -(-len(self.train_sequences) // self.batch_size)
        return float(targets) / batches

    def train_dataloader(self) -> DataLoader[Any]:
        rank, world_size = 0, 1
        if self.trainer is not None:
            rank, world_size = self.trainer.global_rank, self.trainer.world_size
        sampler = LengthBucketBatchSampler(
            self.train_sequences.lengths,
            self.batch_size,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
        )
        if self.trainer is not None:
            sampler.set_epoch(self.trainer.current_epoch)
        sequences, max_len = self.train_sequences, self.max_len
        return DataLoader(
            _Indices(len(sequences)),
            batch_sampler=sampler,
            collate_fn=lambda rows: training_batch(sequences, rows, max_len),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=False,
        )

    def val_dataloader(self) -> DataLoader[Any]:
        return evaluation_loader(
            self.validation,
            self.max_len,
            self.eval_batch_size,
            self.num_workers,
            self.pin_memory,
            candidates=self.val_candidates,
        )


def evaluation_loader(
    held_out: HeldOutTargets,
    max_len: int,
    batch_size: int,
    num_workers: int = 0,
    pin_memory: bool = False,
    candidates: np.ndarray | None = None,
) -> DataLoader[Any]:
    """``EvalBatch``es, longest histories batched together; with ``candidates`` [N, 1 + n] the
    third tensor holds each user's candidates instead of its full history."""
    sampler = LengthBucketBatchSampler(
        held_out.histories.lengths, batch_size, seed=0, shuffle=False
    )

    def collate(rows: list[int]) -> EvalBatch:
        inputs, targets, seen = evaluation_batch(held_out, rows, max_len)
        if candidates is None:
            return inputs, targets, seen
        return inputs, targets, torch.from_numpy(candidates[rows])

    return DataLoader(
        _Indices(len(held_out.targets)),
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=pin_memory,
    )
