"""Tiny training run for tests/test_ddp.py: ``python ddp_worker.py OUT`` (alone or under torchrun).

Every process builds the same seeded data and model and calls hpnet.train.fit; each writes its
final weights to OUT/rank<RANK>.safetensors so the test can compare ranks and runs.
"""
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from hpnet.data.base import ArrayDataset
from hpnet.model import HPNet, ModelConfig
from hpnet.train import TrainConfig, fit

NAMES = ["Smiling", "Male", "Eyeglasses"]


def tiny_data(n: int = 48) -> ArrayDataset:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g)
    targets = (torch.rand(n, len(NAMES), generator=g) > 0.5).float()
    return ArrayDataset(images, targets, NAMES)


def tiny_model() -> HPNet:
    torch.manual_seed(0)
    return HPNet(ModelConfig(NAMES, widths=(4, 8, 8, 8)))


def train_tiny(out: Path, seed: int = 0) -> dict:
    """Six steps of 16 images (2 epochs of 48); ``seed`` orders the batches."""
    model = tiny_model()
    cfg = TrainConfig(epochs=2, batch_size=16, lr=3e-3, device="cpu", amp=False, num_workers=0, seed=seed)
    record = fit(model, tiny_data(), None, cfg, out, progress=False)
    rank = int(os.environ.get("RANK", "0"))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / f"rank{rank}.safetensors"))
    return record


if __name__ == "__main__":
    train_tiny(Path(sys.argv[1]))
