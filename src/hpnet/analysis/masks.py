"""Mean attention mask per attribute and channel (paper Fig. 5).

Entry (k, c) of the K x C grid is the mean of M^k_c = sigmoid(A_k z + a_k)_c over images and
positions. The full mask tensor of a batch is (B, K, C, H, W), 84 MB per image at 64x64 with
K = 40, C = 128, so the masks are computed on slices of a batch whose masks fit ``chunk_mb`` and
reduced at once; only (K, C) sums are kept.
"""
from __future__ import annotations

import torch

from ..core.stream import inference, model_device, stream
from ..data.base import MultiLabelDataset
from ..errors import HPNetError
from ..model import HPNet


def mean_mask_grid(model: HPNet, data: MultiLabelDataset, batch_size: int = 64,
                   max_images: int | None = None, progress: bool = False, transformed: bool = False,
                   chunk_mb: int = 256) -> torch.Tensor:
    """(K, C) float64 mean mask value over the first ``max_images`` images and all positions.

    ``transformed`` uses g(M; n, beta) as the model's transformation is set (default: raw masks).
    """
    if not model.has_masks:
        raise HPNetError("this model has linear heads (plain CNN): it has no attention masks")
    device = model_device(model)
    K, C = model.config.num_attributes, model.config.channels
    sums = torch.zeros(K, C, dtype=torch.float64, device=device)
    positions = 0
    with inference(model):
        for x, _ in stream(data, batch_size, device, max_images, progress, "mean masks"):
            z, context = model.encode(x)
            sums += _mask_sums(model, z, context, transformed, chunk_mb)
            positions += z.shape[0] * z.shape[2] * z.shape[3]
    return (sums / max(positions, 1)).cpu()


def _mask_sums(model: HPNet, z: torch.Tensor, context: torch.Tensor | None, transformed: bool,
               chunk_mb: int) -> torch.Tensor:
    """Sum of the masks over images and positions, (K, C), computing slices of images at a time."""
    B, C, H, W = z.shape
    per_image = model.config.num_attributes * C * H * W * z.element_size()
    step = max(1, (chunk_mb << 20) // max(per_image, 1))
    total = torch.zeros(model.config.num_attributes, C, dtype=torch.float64, device=z.device)
    for i in range(0, B, step):
        part = context[i:i + step] if context is not None else None
        m = model.masks(z[i:i + step], transformed, part)                 # (b, K, C, H, W)
        total += m.sum(dim=(0, 3, 4), dtype=torch.float64)
    return total
