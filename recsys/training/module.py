"""``SASRecModule``: the Lightning wrapper that trains a ``SASRec`` backbone.

Shape letters: B batch, L batch length, H hidden size, V catalogue size, T target positions.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from recsys.errors import ConfigError
from recsys.evaluation import candidate_ranks, full_ranks, hit_rate_at_k, ndcg_at_k
from recsys.models import (
    SASRec,
    SASRecConfig,
    bce_loss,
    full_softmax_loss,
    sampled_softmax_loss,
)
from recsys.training.config import TrainConfig
from recsys.training.optim import SparseRowsAdamW, clip_grad_norm_
from recsys.training.schedule import BudgetedCosine

VALIDATION_METRIC = "val/ndcg@10"


class SASRecModule(pl.LightningModule):
    """Loss, optimiser and validation (full ranking with seen items excluded, or the sampled
    protocol; ``val_protocol``) around the backbone.

    The checkpoint's hyper-parameters hold the backbone config, the training config and the
    dataset fingerprint, so the model can be rebuilt from the checkpoint alone.
    """

    def __init__(
        self,
        model: dict[str, Any],
        train: dict[str, Any],
        dataset_fingerprint: str = "",
        item_train_counts: list[float] | None = None,
        mean_targets_per_batch: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["item_train_counts"])
        self.model = SASRec(SASRecConfig.from_dict(model))
        self.train_config = TrainConfig.build(train)
        negatives = self.train_config.num_negatives
        if self.train_config.loss == "auto" or (
            self.train_config.loss == "sampled_softmax" and negatives == "auto"
        ):
            raise ConfigError(
                "loss (and for sampled_softmax num_negatives) must be resolved before training "
                "(recsys.training.resolve_recipe)"
            )
        self.num_negatives = int(negatives) if negatives != "auto" else 0
        # auto resolves in resolve_recipe; a module built from an unresolved config is dense.
        self.sparse_embedding = self.train_config.embedding_updates == "sparse"
        if self.sparse_embedding and self.train_config.loss == "ce":
            raise ConfigError(
                "embedding_updates sparse needs a sampled loss (sampled_softmax or bce): ce "
                "scores every item, so its gradient is dense; set embedding_updates dense"
            )
        # The input lookup's gradient is sparse too: the table's gradient stays sparse.
        self.model.item_embedding.sparse = self.sparse_embedding
        self.popularity_sampling = self.train_config.loss == "sampled_softmax" and (
            self.train_config.negative_sampling == "popularity"
        )
        # Only training draws from it; a module loaded to score (no counts given) needs none.
        sampling_probs: torch.Tensor | None = None
        if self.popularity_sampling and item_train_counts is not None:
            counts = torch.as_tensor(item_train_counts, dtype=torch.float64)
            if counts.numel() != self.model.config.num_items:
                raise ValueError(
                    f"popularity sampling needs the training count of each of the "
                    f"{self.model.config.num_items} items, got {counts.numel()}"
                )
            probs = torch.cat([torch.zeros(1, dtype=torch.float64), counts + 1.0])
            sampling_probs = (probs / probs.sum()).float()
        self.register_buffer("sampling_probs", sampling_probs, persistent=False)
        self.mean_targets_per_batch = mean_targets_per_batch
        self._epoch_loss_sum = torch.zeros(())  # [], target-weighted; reset every epoch
        self._epoch_targets = 0

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.model(items)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        inputs, targets = batch  # [B, L], [B, L]
        hidden = self.model(inputs)  # [B, L, H]
        has_target = targets != 0  # [B, L]
        config = self.train_config
        if config.target_fraction < 1.0:  # score a random share of the targets this step
            draw = torch.rand(has_target.shape, device=has_target.device)
            sampled = has_target & (draw < config.target_fraction)
            if bool(sampled.any()):  # a tiny batch may draw none: it keeps them all
                has_target = sampled
        row_users = user_items = None
        if config.exclude_seen_negatives:
            row_users = has_target.nonzero()[:, 0]  # [T], grouped by user in order
            user_items = torch.cat([inputs, targets[:, -1:]], dim=1)  # [B, L + 1]: the window
        hidden = hidden[has_target]  # [T, H]: only positions with a target are scored
        targets = targets[has_target]  # [T]
        embedding = self.model.item_embedding.weight  # [V + 1, H]
        if config.loss == "bce":
            loss = bce_loss(
                hidden,
                targets,
                embedding,
                negatives_per_target=config.bce_negatives,
                sparse_rows=self.sparse_embedding,
            )
        elif config.loss == "sampled_softmax":
            probs = self.sampling_probs if isinstance(self.sampling_probs, torch.Tensor) else None
            if self.popularity_sampling and probs is None:
                raise ConfigError(
                    "negative_sampling popularity needs the items' training counts: build the "
                    "module with item_train_counts (recsys.training.train does)"
                )
            loss = sampled_softmax_loss(
                hidden,
                targets,
                embedding,
                self.num_negatives,
                probs,
                row_users=row_users,
                user_items=user_items,
                expected_count_correction=config.logq_correction,
                sparse_rows=self.sparse_embedding,
            )
        else:
            loss = full_softmax_loss(hidden, targets, embedding, row_users, user_items)
        self._record_train_loss(loss.detach(), len(targets))
        if config.loss_weighting == "target":
            # Length-bucketed batches differ ~16x in their number of targets; scaling the batch
            # mean by it gives every target the same weight, as randomly drawn batches would.
            expected = self.mean_targets_per_batch * config.target_fraction
            return loss * (len(targets) / expected)
        return loss

    def on_train_epoch_start(self) -> None:
        self._epoch_loss_sum = torch.zeros((), device=self.device)
        self._epoch_targets = 0

    def _record_train_loss(self, loss: torch.Tensor, targets: int) -> None:
        """Accumulate the epoch's target-weighted mean loss; log the step loss when the logger
        writes (every ``log_every_n_steps``).

        Why not ``self.log(on_step=True, on_epoch=True)`` every step: each ``self.log`` call costs
        Lightning bookkeeping on a CPU (it re-applies ``.to(device)`` over the metric's state),
        a sizeable share of a short BCE step.
        """
        trainer = self._trainer
        if trainer is None:  # a plain loop (bench/train_speed.py) drives training_step itself
            return
        self._epoch_loss_sum += loss * targets
        self._epoch_targets += targets
        every = max(int(getattr(trainer, "log_every_n_steps", 1) or 1), 1)  # set by the Trainer
        if (self.global_step + 1) % every == 0:
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)

    def on_train_epoch_end(self) -> None:
        totals = torch.stack(
            [self._epoch_loss_sum, torch.tensor(float(self._epoch_targets), device=self.device)]
        )
        totals = self.trainer.strategy.reduce(totals, reduce_op="sum")  # every rank's targets
        if float(totals[1]) > 0:
            self.log("train/loss_epoch", totals[0] / totals[1], on_epoch=True, prog_bar=True)

    def validation_step(
        self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch_idx: int
    ) -> None:
        # Scored in float32 even under bf16-mixed training: the checkpoint kept is the one
        # whose validation metric the evaluation (float32) reproduces.
        with torch.autocast(self.device.type, enabled=False):
            self._validate(batch)

    def _validate(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        if self.train_config.val_protocol == "sampled":
            inputs, _, candidates = batch  # [B, L], [B], [B, C]: target first
            last = self.model(inputs)[:, -1]  # [B, H]
            candidate_embeddings = self.model.item_embedding(candidates)  # [B, C, H]
            ranks = candidate_ranks(torch.einsum("bh,bch->bc", last, candidate_embeddings))
            targets = candidates[:, 0]
        else:
            inputs, targets, seen = batch  # [B, L], [B], [B, S]
            ranks = full_ranks(self.model.score_next(inputs), seen, targets)  # seen excluded
        batch_size = len(targets)
        for k in (10, 20):
            self.log(
                f"val/ndcg@{k}",
                ndcg_at_k(ranks, k).mean(),
                batch_size=batch_size,
                sync_dist=True,
                prog_bar=k == 10,
            )
            self.log(
                f"val/hr@{k}",
                hit_rate_at_k(ranks, k).mean(),
                batch_size=batch_size,
                sync_dist=True,
                prog_bar=k == 10,
            )

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip the gradient norm here rather than through the Trainer: Lightning refuses its
        own clipping beside a fused optimizer under mixed precision (it assumes the optimizer
        unscales gradients itself, true of float16's scaler only), and the fused step is the
        fast one (one kernel instead of ~10 passes over the item table). Gradients here are
        whole (all-reduced, unscaled); a sparse embedding gradient is clipped with the rest."""
        clip = self.train_config.gradient_clip
        if clip is not None:
            clip_grad_norm_(self.parameters(), clip)

    def configure_optimizers(self) -> Any:
        config = self.train_config
        decay: list[torch.nn.Parameter] = []
        no_decay: list[torch.nn.Parameter] = []
        for name, parameter in self.named_parameters():
            is_norm_or_bias = parameter.dim() < 2 or "norm" in name
            (no_decay if is_norm_or_bias else decay).append(parameter)
        # With sparse embedding gradients, only the item table's rows a step read are updated.
        optimizer_class = SparseRowsAdamW if self.sparse_embedding else torch.optim.AdamW
        optimizer = optimizer_class(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=config.learning_rate,
            betas=(0.9, 0.98),
            fused=True,  # one kernel per step; on_before_optimizer_step clips
        )
        if config.scheduler == "none":
            return optimizer
        # Planned over max_epochs; BudgetPlanner moves the end when the time budget binds.
        schedule = BudgetedCosine(
            total_steps=int(self.trainer.estimated_stepping_batches),
            warmup_steps=config.warmup_steps,
        )
        self.lr_schedule = schedule
        # A lambda, not the object: LambdaLR would checkpoint an object's attributes.
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
