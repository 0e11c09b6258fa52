"""Measuring operations: the extractor once per batch, the heads once per operation.

An operation is a function of the features z giving the logits of the changed model (pruning masks
channels of z, the transformation pools the masks under g), so every operation of a measurement
shares one extractor pass.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..core.stream import correct_counts, image_count, inference, model_device, stream
from ..data.base import MultiLabelDataset
from ..model import HPNet

# (z (B, C, H, W), context or None) -> logits (B, K)
HeadsFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


@torch.no_grad()
def measure_operations(model: HPNet, data: MultiLabelDataset, operations: Sequence[HeadsFn],
                       max_images: int | None = 256, batch_size: int = 100,
                       progress: bool = False) -> dict[str, torch.Tensor]:
    """Logit and accuracy changes of each operation against the model as it is, per attribute.

    Each operation is a function of the features z (and the context, see ``HPNet.encode``) giving
    the logits of the changed model.
    Returns float64 tensors: ``abs_change`` and ``mean_change`` (O, K), the mean |change| and mean
    signed change of the logits; ``logit_std`` (K,), the standard deviation of the unchanged logits;
    ``accuracy`` (O, K) and ``base_accuracy`` (K,).
    """
    O, K = len(operations), model.config.num_attributes
    abs_sum, signed_sum = torch.zeros(O, K, dtype=torch.float64), torch.zeros(O, K, dtype=torch.float64)
    correct, base_correct = torch.zeros(O, K, dtype=torch.float64), torch.zeros(K, dtype=torch.float64)
    base_logits = []
    with inference(model):
        for x, y in stream(data, batch_size, model_device(model), max_images, progress, "operations"):
            z, context = model.encode(x)
            base = model.heads(z, context)[0].float()
            base_logits.append(base.double().cpu())
            base_correct += correct_counts(base, y)
            for o, op in enumerate(operations):
                logits = op(z, context).float()
                diff = (logits - base).double().cpu()
                abs_sum[o] += diff.abs().sum(0)
                signed_sum[o] += diff.sum(0)
                correct[o] += correct_counts(logits, y)
    n = max(image_count(data, max_images), 1)
    logits = torch.cat(base_logits) if base_logits else torch.zeros(0, K, dtype=torch.float64)
    std = logits.std(0) if logits.shape[0] > 1 else torch.ones(K, dtype=torch.float64)
    return {"abs_change": abs_sum / n, "mean_change": signed_sum / n, "logit_std": std,
            "accuracy": correct / n, "base_accuracy": base_correct / n}


def per_std(change: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Logit change in units of each attribute's logit standard deviation (NaN where it is 0)."""
    return change / torch.where(std > 0, std, torch.full_like(std, math.nan))


def rounded(t: torch.Tensor, digits: int = 5) -> list:
    """A tensor as nested lists of floats with ``digits`` significant digits (NaN kept)."""
    return [[float(f"{v:.{digits}g}") for v in row] for row in t.tolist()] if t.dim() == 2 else \
        [float(f"{v:.{digits}g}") for v in t.tolist()]
