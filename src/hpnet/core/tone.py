"""Intentional attention mask transformation (paper Eq. 11-12).

``h(M; n)`` is a symmetric tone curve about 0.5: values below 0.5 are pushed towards 0 and values
above towards 1 when ``n > 1`` (the reverse when ``n < 1``). ``g(M; n, beta) = (1 + beta) h(M; n) - beta``
then lowers every mask value by ``beta (1 - h)``, so weak attention is suppressed more than strong.
``n = 1, beta = 0`` is the identity. :func:`tone_curve_grad` is dh/dM, for the fused heads' backward.
"""
from __future__ import annotations

import torch


def tone_curve(m: torch.Tensor, n: float | torch.Tensor) -> torch.Tensor:
    """h(M; n) of Eq. 12, elementwise; ``n`` is a number or a tensor broadcastable to ``m``.

    Written with one power instead of two branches: with d = 2M - 1, both cases of Eq. 12 are
    h = 0.5 + sign(d) * (0.5 - 0.5 * (1 - |d|)^n).
    """
    d = 2.0 * m - 1.0
    return 0.5 + torch.sign(d) * (0.5 - 0.5 * (1.0 - d.abs()) ** n)


def mask_transform(m: torch.Tensor, n: float | torch.Tensor = 1.0,
                   beta: float | torch.Tensor = 0.0) -> torch.Tensor:
    """g(M; n, beta) = (1 + beta) * h(M; n) - beta (Eq. 11), elementwise on any tensor."""
    return (1.0 + beta) * tone_curve(m, n) - beta


def tone_curve_grad(m: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """dh/dM of Eq. 12: n (2M)^(n-1) below 0.5, n (2(1-M))^(n-1) from 0.5 up."""
    low = n * (2.0 * m.clamp(max=0.5)) ** (n - 1.0)
    high = n * (2.0 * (1.0 - m).clamp(max=0.5)) ** (n - 1.0)
    return torch.where(m < 0.5, low, high)
