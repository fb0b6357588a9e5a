"""Reading a training checkpoint back: what a run wrote loads for scoring, whatever it trained
with."""

from __future__ import annotations

from pathlib import Path

import torch

from recsys.data import CleaningConfig, PrepareConfig, prepare_dataset, write_prepared
from recsys.data.synthetic import SynthConfig, generate_log
from recsys.training import TrainConfig, checkpoint_scorer, load_checkpoint, train


def test_a_popularity_sampled_run_loads_for_scoring(tmp_path: Path) -> None:
    """Its sampling distribution is built from the data when training, not stored: a checkpoint
    loaded to score must not need it."""
    log = generate_log(SynthConfig(n_users=200, n_items=60, n_events=3000, seed=2))
    prepared = prepare_dataset(log, PrepareConfig(cleaning=CleaningConfig(min_user_interactions=3)))
    data = write_prepared(prepared, tmp_path / "data")
    config = TrainConfig.build(
        {
            "loss": "sampled_softmax",
            "num_negatives": 16,
            "negative_sampling": "popularity",
            "hidden_size": 8,
            "n_blocks": 1,
            "max_len": 10,
            "dropout": 0.1,
            "max_epochs": 1,
            "accelerator": "cpu",
            "devices": 1,
        }
    )
    train(data, tmp_path / "run", config, progress=False)
    checkpoint = tmp_path / "run" / "checkpoints" / "best.ckpt"
    module = load_checkpoint(checkpoint, prepared)
    assert module.train_config.negative_sampling == "popularity"
    scores = checkpoint_scorer(checkpoint, prepared)(torch.tensor([[1, 2, 3]]))
    assert scores.shape == (1, prepared.num_items + 1)
