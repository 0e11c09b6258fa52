"""Evaluation: logits of a data set, per-attribute accuracy, the majority-class baseline, mask statistics."""
from __future__ import annotations

import math

import torch

from .core.stream import batches, to_input
from .data.base import ArrayDataset, MultiLabelDataset
from .model import HPNet
from .progress import bar


@torch.no_grad()
def predict(model: HPNet, data: MultiLabelDataset, batch_size: int = 256,
            device: torch.device | None = None, progress: bool = False,
            noise_std: float = 0.0, seed: int = 0) -> torch.Tensor:
    """Logits (N, K) of the whole data set; optional Gaussian input noise (on [0, 1] images)."""
    device = device or next(model.parameters()).device
    model.eval()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    for images, _ in bar(batches(data, batch_size), total=math.ceil(len(data) / batch_size), desc="evaluating",
                         unit="batch", enabled=progress):
        x = to_input(images, device)
        if noise_std > 0:
            x = x + noise_std * torch.randn(x.shape, generator=gen).to(device)
        out.append(model(x).logits.float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.config.num_attributes)


def accuracy_table(logits: torch.Tensor, targets: torch.Tensor, names: list[str],
                   train_positive_rate: list[float]) -> dict:
    """Per-attribute accuracy and the majority-class baseline (majority taken from training labels)."""
    correct = ((logits > 0).float() == targets).float().mean(0)
    majority = torch.tensor([1.0 if p >= 0.5 else 0.0 for p in train_positive_rate])
    baseline = (targets == majority).float().mean(0)
    positives = targets.sum(0)
    rows = [{"name": n, "accuracy": float(a), "majority_baseline": float(b), "positives": int(p)}
            for n, a, b, p in zip(names, correct, baseline, positives)]
    return {"mean_accuracy": float(correct.mean()), "mean_majority_baseline": float(baseline.mean()),
            "images": int(targets.shape[0]), "per_attribute": rows}


def evaluate(model: HPNet, data: MultiLabelDataset, train_positive_rate: list[float],
             batch_size: int = 256, progress: bool = False) -> dict:
    logits = predict(model, data, batch_size, progress=progress)
    return accuracy_table(logits, data.targets, model.attribute_names, train_positive_rate)


def majority_accuracy(train_positive_rate: list[float], targets: torch.Tensor) -> float | None:
    """Mean accuracy of always answering each attribute's majority class of the training labels;
    None when the rates do not match the targets' attributes or there are no targets."""
    rates = list(train_positive_rate or [])
    if len(rates) != targets.shape[1] or not len(targets):
        return None
    majority = (torch.tensor(rates) >= 0.5).float()
    return float((targets == majority).float().mean())


@torch.no_grad()
def mask_statistics(model: HPNet, data: MultiLabelDataset, images: int = 64,
                    threshold: float = 0.1) -> dict | None:
    """Mean mask value and sparsity (fraction of mask values below ``threshold``) on a few images."""
    if not model.has_masks or len(data) == 0:
        return None
    model.eval()
    device = next(model.parameters()).device
    x = to_input(data[:images][0] if isinstance(data, ArrayDataset) else
                 torch.stack([data.image(i) for i in range(min(images, len(data)))]), device)
    z, context = model.encode(x)
    m = model.masks(z, context=context)
    return {"mean": float(m.mean()), "sparsity": float((m < threshold).float().mean()),
            "threshold": threshold, "images": int(x.shape[0])}
