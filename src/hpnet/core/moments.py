"""One-pass statistics: running first and second moments of C channels, and their Pearson correlation.

Memory is O(C^2) whatever the number of observations; sums are float64 and taken about a shift
(the first batch's channel means), which keeps ``E[zz] - E[z]E[z]`` free of cancellation when a
channel's mean is large next to its spread.
"""
from __future__ import annotations

import torch

# observations per float64 cross-product chunk: bounds the float64 copy (C x 2^20 x 8 bytes)
_CHUNK = 1 << 20


class Moments:
    """Running sums of z - shift and (z - shift)(z - shift)^T over observations, in float64.

    ``add(z)`` takes z with the C channels on dimension 1 (e.g. (B, C, H, W) features: every
    (image, h, w) is one observation; (N, C) rows: every row is one).
    """

    def __init__(self) -> None:
        self.n = 0
        self.shift: torch.Tensor | None = None
        self.sums: torch.Tensor | None = None
        self.cross: torch.Tensor | None = None

    def add(self, z: torch.Tensor) -> None:
        C = z.shape[1]
        flat = z.detach().transpose(0, 1).reshape(C, -1)                  # (C, observations)
        if self.shift is None:
            self.shift = flat.double().mean(1)
            self.sums = torch.zeros(C, dtype=torch.float64, device=z.device)
            self.cross = torch.zeros(C, C, dtype=torch.float64, device=z.device)
        for p in range(0, flat.shape[1], _CHUNK):
            part = flat[:, p:p + _CHUNK].double() - self.shift[:, None]
            self.sums += part.sum(1)
            self.cross += part @ part.T
        self.n += flat.shape[1]

    def correlation(self) -> torch.Tensor:
        """Pearson correlation (C, C); a constant channel correlates 0 with the others, 1 with itself."""
        mean = self.sums / self.n                                         # mean of z - shift
        cov = self.cross / self.n - torch.outer(mean, mean)
        var = cov.diagonal().clamp(min=0.0)
        # a channel is constant (e.g. pruned, or a dead unit) when its variance is at rounding level
        scale = (self.shift + mean) ** 2
        alive = var > 1e-20 * scale + 1e-30
        std = torch.where(alive, var.sqrt(), torch.ones_like(var))
        corr = (cov / torch.outer(std, std)).clamp(-1.0, 1.0)
        corr = corr * torch.outer(alive, alive)
        corr.fill_diagonal_(1.0)
        return corr
