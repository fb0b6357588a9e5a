"""The training job end to end: checkpoints, resume, summary, and a model that really learns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from recsys.data import (
    CleaningConfig,
    PrepareConfig,
    evaluation_batch,
    held_out_targets,
    prepare_dataset,
    training_batch,
    write_prepared,
)
from recsys.data.synthetic import SynthConfig, generate_log
from recsys.errors import ConfigError, DataError, OutputExistsError
from recsys.evaluation import ndcg_at_k, target_ranks
from recsys.training import (
    SASRecModule,
    SequenceDataModule,
    TrainConfig,
    train,
)
from recsys.training.curves import epoch_metrics

FAST = {
    "hidden_size": 32,
    "n_heads": 2,
    "max_len": 20,
    "batch_size": 64,
    "learning_rate": 0.005,
    "dropout": 0.1,
    "accelerator": "cpu",
    "devices": 1,
}


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    log = generate_log(SynthConfig(n_users=400, n_items=120, n_events=12_000, seed=3))
    config = PrepareConfig(cleaning=CleaningConfig(min_user_interactions=3))
    out = tmp_path_factory.mktemp("synthetic") / "data"
    return write_prepared(prepare_dataset(log, config), out)


def _validation_ndcg(data: Path, scorer: str, checkpoint: Path | None = None) -> float:
    from recsys.data import load_prepared

    dataset = load_prepared(data)
    held_out = held_out_targets(dataset, "validation")
    inputs, targets, seen = evaluation_batch(held_out, list(range(len(held_out.targets))), 20)
    if scorer == "model":
        assert checkpoint is not None
        module = SASRecModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
        with torch.no_grad():
            scores = module.model.score_next(inputs)
    else:  # most popular in training, the same for everyone
        counts = dataset.items.table.get_column("train_count").to_list()
        scores = torch.tensor([float("-inf"), *map(float, counts)]).expand(len(targets), -1)
    scores = scores.scatter(1, seen, float("-inf"))
    return float(ndcg_at_k(target_ranks(scores, targets), 10).mean())


@pytest.mark.slow
def test_a_trained_model_beats_most_popular(synthetic_data: Path, tmp_path: Path) -> None:
    config = TrainConfig.build({**FAST, "loss": "ce", "max_epochs": 8, "patience": 8})
    summary = train(synthetic_data, tmp_path / "run", config, progress=False)
    model_ndcg = _validation_ndcg(synthetic_data, "model", tmp_path / "run/checkpoints/best.ckpt")
    popular_ndcg = _validation_ndcg(synthetic_data, "popular")
    assert summary["best_validation"]["val/ndcg@10"] == pytest.approx(model_ndcg, abs=1e-4)
    print(f"validation NDCG@10: model {model_ndcg:.4f}, most popular {popular_ndcg:.4f}")
    assert model_ndcg > 1.5 * popular_ndcg, (model_ndcg, popular_ndcg)


@pytest.mark.slow
def test_sparse_embedding_updates_learn_and_resume(synthetic_data: Path, tmp_path: Path) -> None:
    """The large-catalogue path end to end: sparse item-table gradients, the lazy optimiser,
    clipping, a checkpoint and a resume from it."""
    settings = {**FAST, "loss": "sampled_softmax", "num_negatives": 32}
    config = TrainConfig.build({**settings, "embedding_updates": "sparse", "max_epochs": 8})
    summary = train(synthetic_data, tmp_path / "run", config, progress=False)
    assert summary["config"]["embedding_updates"] == "sparse"
    model_ndcg = _validation_ndcg(synthetic_data, "model", tmp_path / "run/checkpoints/best.ckpt")
    popular_ndcg = _validation_ndcg(synthetic_data, "popular")
    assert model_ndcg > 1.5 * popular_ndcg, (model_ndcg, popular_ndcg)
    more = config.model_copy(update={"max_epochs": 9})
    resumed = train(synthetic_data, tmp_path / "run", more, resume=True, progress=False)
    assert resumed["epochs_trained"] == 9


@pytest.mark.parametrize("loss", ["sampled_softmax", "bce"])
def test_sparse_rows_carry_the_dense_gradient(synthetic_data: Path, loss: str) -> None:
    """With ``embedding_updates: sparse`` the item table's gradient holds the same values as
    the dense path's, as rows: only what a step read."""
    from recsys.data import load_prepared

    data = SequenceDataModule(load_prepared(synthetic_data), 20, 64, 64, seed=0)
    batch = training_batch(data.train_sequences, list(range(64)), 20)
    gradients = []
    for mode in ("dense", "sparse"):
        config = TrainConfig.build(
            {**FAST, "dropout": 0.0, "loss": loss, "num_negatives": 16, "embedding_updates": mode}
        )
        torch.manual_seed(0)
        module = SASRecModule(
            config.model_config_for(data.num_items).to_dict(), config.model_dump(mode="json")
        )
        torch.manual_seed(1)
        module.training_step(batch, 0).backward()
        gradient = module.model.item_embedding.weight.grad
        assert gradient is not None
        assert gradient.is_sparse == (mode == "sparse")
        gradients.append(gradient.to_dense() if gradient.is_sparse else gradient)
    torch.testing.assert_close(gradients[1], gradients[0], rtol=1e-4, atol=1e-5)  # sum order
    untouched = (gradients[0] == 0).all(dim=1)
    assert bool(untouched.any())  # rows no step read: nothing for an optimiser to do there


def test_sparse_updates_with_the_full_softmax_are_refused() -> None:
    config = TrainConfig.build({**FAST, "loss": "ce", "embedding_updates": "sparse"})
    with pytest.raises(ConfigError, match="embedding_updates sparse needs a sampled loss"):
        SASRecModule(config.model_config_for(50).to_dict(), config.model_dump(mode="json"))


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["bce", "sampled_softmax"])
def test_run_writes_everything_and_resumes(synthetic_data: Path, tmp_path: Path, loss: str) -> None:
    run_dir = tmp_path / "run"
    config = TrainConfig.build(
        {**FAST, "loss": loss, "max_epochs": 2, "num_negatives": 32, "check_val_every_n_epoch": 2}
    )
    first = train(synthetic_data, run_dir, config, progress=False)
    for name in ("config.yaml", "summary.json", "training_curves.png", "logs/metrics.csv"):
        assert (run_dir / name).is_file(), name
    assert first["epochs_trained"] == 2
    assert json.loads((run_dir / "summary.json").read_text())["config"]["loss"] == loss
    checkpoint = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=False)
    assert checkpoint["epoch"] == 1
    assert checkpoint["hyper_parameters"]["model"]["num_items"] > 0

    with pytest.raises(OutputExistsError, match="--resume"):
        train(synthetic_data, run_dir, config, progress=False)
    more = config.model_copy(update={"max_epochs": 3})
    resumed = train(synthetic_data, run_dir, more, resume=True, progress=False)
    assert resumed["epochs_trained"] == 3
    # Epoch 2 is not validated (every 2nd epoch), yet last.ckpt must hold it: resume = latest.
    assert torch.load(run_dir / "checkpoints/last.ckpt", weights_only=False)["epoch"] == 2
    assert torch.load(run_dir / "checkpoints/best.ckpt", weights_only=False)["epoch"] == 1
    epochs = epoch_metrics(sorted((run_dir / "logs").glob("**/metrics.csv")))
    assert epochs.get_column("epoch").to_list() == [0, 1, 2]  # nothing lost by resuming
    losses = epochs.get_column("train/loss_epoch").to_list()
    assert all(loss is not None and 0 < loss < 100 for loss in losses), losses  # every epoch's


def test_resume_without_a_checkpoint_is_explained(synthetic_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no checkpoint to resume from"):
        train(synthetic_data, tmp_path / "run", TrainConfig.build(FAST), resume=True)


def test_a_folder_that_is_not_a_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a prepared dataset"):
        train(tmp_path, tmp_path / "run", TrainConfig.build(FAST))


@pytest.mark.slow
def test_training_is_deterministic_given_a_seed(synthetic_data: Path, tmp_path: Path) -> None:
    config = TrainConfig.build({**FAST, "loss": "bce", "max_epochs": 2, "seed": 7})
    first = train(synthetic_data, tmp_path / "a", config, progress=False)
    second = train(synthetic_data, tmp_path / "b", config, progress=False)
    assert first["best_validation"] == second["best_validation"]
    weights = [
        torch.load(tmp_path / run / "checkpoints/last.ckpt", weights_only=False)["state_dict"]
        for run in ("a", "b")
    ]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    other = train(synthetic_data, tmp_path / "c", config.model_copy(update={"seed": 8}))
    assert other["best_validation"] != first["best_validation"]


def test_sampled_validation_candidates_are_the_target_then_unseen_items(
    synthetic_data: Path,
) -> None:
    from recsys.data import load_prepared

    dataset = load_prepared(synthetic_data)
    data = SequenceDataModule(dataset, 20, 64, 64, seed=5, val_negatives=30)
    candidates = data.val_candidates
    assert candidates is not None
    assert candidates.shape == (len(data.validation.targets), 31)
    assert (candidates[:, 0] == data.validation.targets).all()
    interactions = dataset.interactions.select("user_idx", "item_idx")
    seen = interactions.group_by("user_idx").agg("item_idx")
    items_of = {row[0]: set(row[1]) for row in seen.iter_rows()}
    for user, row in zip(data.validation.user_indices, candidates, strict=True):
        negatives = set(row[1:].tolist())
        assert len(negatives) == 30 and not negatives & items_of[user] and 0 not in negatives
    again = SequenceDataModule(dataset, 20, 64, 64, seed=5, val_negatives=30).val_candidates
    assert again is not None and (again == candidates).all()  # the same candidates every run


@pytest.mark.slow
def test_sampled_validation_selects_on_the_papers_protocol(
    synthetic_data: Path, tmp_path: Path
) -> None:
    from recsys.data import load_prepared

    config = TrainConfig.build(
        {**FAST, "loss": "bce", "max_epochs": 2, "val_protocol": "sampled", "val_negatives": 50}
    )
    summary = train(synthetic_data, tmp_path / "run", config, progress=False)
    data = SequenceDataModule(load_prepared(synthetic_data), 20, 64, 64, 0, val_negatives=50)
    assert data.val_candidates is not None
    module = SASRecModule.load_from_checkpoint(tmp_path / "run/checkpoints/best.ckpt").eval()
    rows = list(range(len(data.validation.targets)))
    inputs, _, _ = evaluation_batch(data.validation, rows, 20)
    with torch.no_grad():
        scores = module.model.score_next(inputs)
    candidates = torch.from_numpy(data.val_candidates)
    ranks = target_ranks(scores.gather(1, candidates), torch.zeros(len(rows), dtype=torch.long))
    expected = float(ndcg_at_k(ranks, 10).mean())
    assert summary["best_validation"]["val/ndcg@10"] == pytest.approx(expected, abs=1e-4)
    full = _validation_ndcg(synthetic_data, "model", tmp_path / "run/checkpoints/best.ckpt")
    assert expected > full  # 50 candidates are an easier task than the whole catalogue


def test_target_weighting_gives_every_target_the_same_weight(synthetic_data: Path) -> None:
    from recsys.data import load_prepared

    data = SequenceDataModule(load_prepared(synthetic_data), 20, 64, 64, seed=0)
    lengths = data.train_sequences.lengths
    batches = -(-len(lengths) // 64)
    assert data.mean_targets_per_batch == pytest.approx((lengths - 1).clip(max=20).sum() / batches)
    config = TrainConfig.build({**FAST, "loss": "ce"})
    per_batch = SASRecModule(
        config.model_config_for(data.num_items).to_dict(),
        config.model_copy(update={"loss_weighting": "batch"}).model_dump(mode="json"),
    ).eval()
    per_target = SASRecModule(
        config.model_config_for(data.num_items).to_dict(),
        config.model_dump(mode="json"),
        mean_targets_per_batch=data.mean_targets_per_batch,
    ).eval()
    per_target.load_state_dict(per_batch.state_dict())
    short, long = sorted(range(len(lengths)), key=lambda i: lengths[i])[:: len(lengths) - 1]
    for row in (short, long):
        batch = training_batch(data.train_sequences, [row], 20)
        targets = int((batch[1] != 0).sum())
        mean_loss = per_batch.training_step(batch, 0)
        weighted = per_target.training_step(batch, 0)
        # the batch's summed per-target loss over the mean number of targets per batch
        assert float(weighted) == pytest.approx(
            float(mean_loss) * targets / data.mean_targets_per_batch, rel=1e-5
        )


def test_a_run_shorter_than_the_validation_period_still_validates(
    synthetic_data: Path, tmp_path: Path
) -> None:
    config = TrainConfig.build(
        {**FAST, "loss": "bce", "max_epochs": 1, "check_val_every_n_epoch": 5}
    )
    summary = train(synthetic_data, tmp_path / "run", config, progress=False)
    assert summary["best_epoch"] == 0
    assert "val/ndcg@10" in summary["best_validation"]
    assert summary["best_checkpoint"] is not None
    assert Path(summary["best_checkpoint"]).is_file()


def test_mixed_precision_trains_with_gradient_clipping(
    synthetic_data: Path, tmp_path: Path
) -> None:
    """bf16-mixed (the GPU default) with clipping: Lightning refuses a fused optimizer there."""
    config = TrainConfig.build(
        {**FAST, "loss": "bce", "max_epochs": 1, "precision": "bf16-mixed", "gradient_clip": 1.0}
    )
    summary = train(synthetic_data, tmp_path / "run", config, progress=False)
    assert summary["precision"] == "bf16-mixed"
    assert 0.0 < summary["best_validation"]["val/ndcg@10"] <= 1.0


def test_a_target_fraction_scores_that_share_of_the_targets(
    synthetic_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recsys.data import load_prepared

    data = SequenceDataModule(load_prepared(synthetic_data), 20, 64, 64, seed=0)
    config = TrainConfig.build({**FAST, "loss": "sampled_softmax", "num_negatives": 8})
    scored: list[int] = []

    def counting(hidden: torch.Tensor, targets: torch.Tensor, *_: object, **__: object) -> Any:
        scored.append(len(targets))
        return hidden.sum() * 0.0 + 1.0  # a loss of 1 per target, whatever is scored

    monkeypatch.setattr("recsys.training.module.sampled_softmax_loss", counting)
    batch = training_batch(data.train_sequences, list(range(64)), 20)
    all_targets = int((batch[1] != 0).sum())
    for fraction in (1.0, 0.5):
        settings = config.model_copy(update={"target_fraction": fraction})
        module = SASRecModule(
            config.model_config_for(data.num_items).to_dict(),
            settings.model_dump(mode="json"),
            mean_targets_per_batch=data.mean_targets_per_batch,
        )
        torch.manual_seed(0)
        weighted = module.training_step(batch, 0)
        # the mean over the targets scored, weighted as if every target had been
        expected = scored[-1] / (data.mean_targets_per_batch * fraction)
        assert float(weighted) == pytest.approx(expected)
    assert scored[0] == all_targets
    assert 0.35 * all_targets < scored[1] < 0.65 * all_targets


@pytest.mark.parametrize("loss", ["sampled_softmax", "ce", "bce"])
def test_padding_never_counts_in_the_loss(synthetic_data: Path, loss: str) -> None:
    """The same users padded wider give the same loss and gradients: padding positions carry no
    target and their states are never scored."""
    from recsys.data import load_prepared

    data = SequenceDataModule(load_prepared(synthetic_data), 20, 64, 64, seed=0)
    config = TrainConfig.build(
        {**FAST, "dropout": 0.0, "loss": loss, "num_negatives": 16, "precision": "32-true"}
    )
    module = SASRecModule(
        config.model_config_for(data.num_items).to_dict(),
        config.model_dump(mode="json"),
        mean_targets_per_batch=data.mean_targets_per_batch,
    )
    short = [int(i) for i in np.flatnonzero(data.train_sequences.lengths <= 10)[:3]]
    inputs, targets = training_batch(data.train_sequences, short, 20)  # at most 9 wide
    padded = (
        torch.nn.functional.pad(inputs, (5, 0)),
        torch.nn.functional.pad(targets, (5, 0)),
    )
    results = []
    for batch in ((inputs, targets), padded):
        module.zero_grad()
        torch.manual_seed(0)
        value = module.training_step(batch, 0)
        value.backward()
        gradient = module.model.item_embedding.weight.grad
        assert gradient is not None
        results.append((float(value), gradient.clone()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-6)


def test_patience_counts_validations_not_epochs(
    synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the validation period decided after the first epoch (here: never again within the
    run), a metric that stops improving stops the run only after `patience` more validations,
    never after as many training epochs (the stale metric was checked after every epoch)."""
    from recsys.training import callbacks

    original = callbacks.AdaptiveValidation.__init__

    def rarely(self: callbacks.AdaptiveValidation, share: float = 0.2) -> None:
        original(self, share=1e-9)  # validation "costs" a billion epochs: validate once

    monkeypatch.setattr(callbacks.AdaptiveValidation, "__init__", rarely)
    config = TrainConfig.build(
        {
            **FAST,
            "loss": "bce",
            "learning_rate": 1e-12,  # nothing is learnt: no validation improves on the first
            "max_epochs": 6,
            "check_val_every_n_epoch": "auto",
            "patience": 1,
        }
    )
    summary = train(synthetic_data, tmp_path / "run", config, progress=False)
    assert summary["stopped_by"] == "max_epochs" and not summary["stopped_early"]
    assert summary["epochs_trained"] == 6


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"learning_rate": 1e-12, "patience": 1, "check_val_every_n_epoch": 1}, "early_stopping"),
        ({"max_minutes": 1e-4, "check_val_every_n_epoch": 3}, "time_budget"),
    ],
)
def test_the_summary_says_why_the_run_stopped(
    synthetic_data: Path, tmp_path: Path, overrides: dict[str, object], reason: str
) -> None:
    """A run the budget ended did not stop early: a reader comparing runs needs to know which
    ones were still learning."""
    config = TrainConfig.build({**FAST, "loss": "bce", "max_epochs": 6, **overrides})
    summary = train(synthetic_data, tmp_path / "run", config, progress=False)
    assert summary["stopped_by"] == reason
    assert summary["stopped_early"] == (reason == "early_stopping")
    assert summary["epochs_trained"] < 6
    # Even a budget that ran out inside the first epoch leaves a validated model to export.
    assert summary["best_checkpoint"] and Path(summary["best_checkpoint"]).is_file()
    assert "val/ndcg@10" in summary["best_validation"]


def test_validation_on_a_user_sample_keeps_the_same_users_every_epoch(
    synthetic_data: Path,
) -> None:
    from recsys.data import load_prepared

    dataset = load_prepared(synthetic_data)
    whole = SequenceDataModule(dataset, 20, 64, 64, seed=0)
    sample = SequenceDataModule(dataset, 20, 64, 64, seed=0, val_users=30, val_negatives=10)
    again = SequenceDataModule(dataset, 20, 64, 64, seed=0, val_users=30)
    assert len(sample.validation.targets) == 30 < len(whole.validation.targets)
    assert set(sample.validation.user_indices) <= set(whole.validation.user_indices)
    assert (sample.validation.user_indices == again.validation.user_indices).all()
    assert sample.val_candidates is not None and len(sample.val_candidates) == 30
    assert len(list(sample.val_dataloader())) == 1  # 30 users, batches of 64
