"""Training on a CUDA GPU: bf16 mixed precision by default, and a checkpoint that serves on CPU.

Skipped where no CUDA GPU is present (CI); run on a lent GPU machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from recsys.training import SASRecModule, TrainConfig, train

if TYPE_CHECKING:
    from tests.conftest import TinyRuns

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, tiny_runs: type[TinyRuns]) -> Path:
    folder = tmp_path_factory.mktemp("gpu") / "data"
    return tiny_runs.prepared(folder, n_users=300, n_items=100, n_events=6000, seed=5)


@pytest.mark.parametrize("loss", ["bce", "sampled_softmax", "ce"])
def test_auto_trains_on_the_gpu_in_bf16(data: Path, tmp_path: Path, loss: str) -> None:
    config = TrainConfig.build(
        {"hidden_size": 32, "max_len": 20, "max_epochs": 3, "loss": loss, "num_negatives": 32}
    )
    summary = train(data, tmp_path / "run", config, progress=False)

    assert summary["device"].startswith("cuda")
    assert summary["precision"] == "bf16-mixed"
    assert 0.0 < summary["best_validation"]["val/ndcg@10"] <= 1.0
    # The checkpoint is float32 and loads on a machine without a GPU.
    module = SASRecModule.load_from_checkpoint(
        tmp_path / "run/checkpoints/best.ckpt", map_location="cpu"
    )
    weights = module.model.item_embedding.weight
    assert weights.device.type == "cpu" and weights.dtype == torch.float32
    assert torch.isfinite(weights).all()


def test_gpu_and_cpu_models_score_alike(data: Path, tmp_path: Path) -> None:
    """The same weights score the same on both devices (bf16 only changes training)."""
    config = TrainConfig.build({"hidden_size": 32, "max_len": 20, "max_epochs": 2})
    train(data, tmp_path / "run", config, progress=False)
    module = SASRecModule.load_from_checkpoint(
        tmp_path / "run/checkpoints/best.ckpt", map_location="cpu"
    ).eval()
    high = module.model.config.num_items + 1
    items = torch.randint(1, high, (16, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        on_cpu = module.model.score_next(items)
        on_gpu = module.model.cuda().score_next(items.cuda()).cpu()
    finite = torch.isfinite(on_cpu)
    assert torch.equal(finite, torch.isfinite(on_gpu))
    assert torch.allclose(on_cpu[finite], on_gpu[finite], atol=1e-3, rtol=1e-3)
