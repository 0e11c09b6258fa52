"""Intentional attention mask transformation (paper Eq. 11-12).

``h(M; n)`` is a symmetric tone curve about 0.5: values below 0.5 are pushed towards 0 and values
above towards 1 when ``n > 1`` (the reverse when ``n < 1``). ``g(M; n, beta) = (1 + beta) h(M; n) - beta``
then lowers every mask value by ``beta (1 - h)``, so weak attention is suppressed more than strong.
``n = 1, beta = 0`` is the identity.
"""
from __future__ import annotations

import torch


def tone_curve(m: torch.Tensor, n: float | torch.Tensor) -> torch.Tensor:
    """h(M; n) of Eq. 12, elementwise; ``n`` is a number or a tensor broadcastable to ``m``."""
    low = 0.5 * (2.0 * m.clamp(max=0.5)) ** n
    high = 1.0 - 0.5 * (2.0 * (1.0 - m).clamp(max=0.5)) ** n
    return torch.where(m < 0.5, low, high)


def mask_transform(m: torch.Tensor, n: float | torch.Tensor = 1.0,
                   beta: float | torch.Tensor = 0.0) -> torch.Tensor:
    """g(M; n, beta) = (1 + beta) * h(M; n) - beta (Eq. 11), elementwise on any tensor."""
    return (1.0 + beta) * tone_curve(m, n) - beta
