"""What the benchmark measures: the networks, their inputs, a training step and an inference."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..core.stream import to_input
from ..model import HPNet, ModelConfig
from ..train import loss_fn

if TYPE_CHECKING:
    from . import BenchConfig


def make_model(cfg: BenchConfig, impl: str, device: torch.device, seed: int = 0, head: str = "attention") -> HPNet:
    torch.manual_seed(seed)
    return HPNet(cfg.model_config(impl, head)).to(device)


def batch(cfg: BenchConfig, size: int, device: torch.device, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (size, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8, generator=g)
    targets = (torch.rand(size, cfg.attributes, generator=g) > 0.5).float()
    return to_input(images, device), targets.to(device)


def train_step_fn(model: HPNet, x: torch.Tensor, y: torch.Tensor):
    """One optimisation step as the trainer takes it (loss of Eq. 10, Adam)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()

    def step():
        out = model(x)
        loss, _ = loss_fn(out.logits, y, out.mask_l1, 1e-5)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def infer_fn(model: HPNet, x: torch.Tensor):
    model.eval()

    def infer():
        with torch.inference_mode():
            model(x)
    return infer


def pruned_model(model: HPNet) -> tuple[HPNet, str]:
    """The network with half its feature channels physically removed."""
    keep = list(range(0, model.config.channels, 2))
    try:
        from ..ops.pruning import prune_physical
    except ImportError:  # fall back to a config of the same shape (same speed)
        config = ModelConfig.from_dict(model.config.to_dict())
        config.widths = config.widths[:-1] + (len(keep),)
        return HPNet(config).to(next(model.parameters()).device), "config"
    return prune_physical(model, keep), "prune_physical"
