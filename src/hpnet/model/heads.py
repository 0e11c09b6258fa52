"""The K binary classifiers on top of the features z, one registry entry per head family.

Every head family is an ``nn.Module`` built as ``cls(num_attributes, channels, config)`` (through
:func:`build_heads`) with what operations and analyses use of it:

- ``forward(z)`` -> (logits (B, K), per-image mask sum (B,)) and ``pooled(z)`` -> (B, K, C), what
  each classifier reads (logit_k = pooled[:, k] . w_k + b_k);
- ``weight`` (K, C) and ``bias`` (K,): the classifiers w_k, b_k;
- ``has_masks``; with masks also ``masks(z, transformed)`` (B, K, C, H, W), ``logits_under(z, n,
  beta)`` and the transformation buffers ``transform_n``, ``transform_beta`` (K,);
- ``channel_dims``: which dimensions of which parameters are indexed by the C channels of z, so
  that physical pruning can cut any head family; ``macs(K, C, positions)`` for the MAC count.

To add a head family: one class here, registered in :data:`HEADS`, plus its test.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn as nn

from ..core.tone import mask_transform
from ..registry import Registry
from .fused import fused_heads, fused_pooled_many

HEAD_IMPLS = ("fused", "naive")


class HeadConfig(Protocol):
    """What a head family reads of the model's configuration."""

    head: str
    num_attributes: int
    channels: int
    head_impl: str
    head_chunk_mb: float


def _head_chunk(z: torch.Tensor, mask_w: torch.Tensor, mask_b: torch.Tensor, n: torch.Tensor,
                beta: torch.Tensor, transform: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The naive reference: pooled features and mask sums through the whole (B, k, C, HW) masks.

    z (B, C, HW); mask_w (k, C, C); mask_b (k, C); n, beta (k,). hpnet.model.fused computes the same
    without the full tensor and is tested against this.
    Returns pooled (B, k, C) = mean_hw(g(M) * z) and the sum of M over (C, HW), shape (B, k).
    """
    B, C, HW = z.shape
    k = mask_w.shape[0]
    m = torch.sigmoid(_mask_logits(z, mask_w, mask_b))              # (B, k, C, HW)
    m_sum = m.sum(dim=(2, 3))                                       # (B, k)
    if transform:
        m = mask_transform(m, n.view(1, k, 1, 1), beta.view(1, k, 1, 1))
    pooled = torch.einsum("bkcp,bcp->bkc", m, z) / HW               # (B, k, C)
    return pooled, m_sum


def _mask_logits(z: torch.Tensor, mask_w: torch.Tensor, mask_b: torch.Tensor) -> torch.Tensor:
    """A_k z + a_k for a chunk of heads as one matrix product: (B, k, C, HW)."""
    B, C, HW = z.shape
    k = mask_w.shape[0]
    out = torch.matmul(mask_w.reshape(k * C, C), z)                 # (B, k*C, HW)
    return out.view(B, k, C, HW) + mask_b.view(1, k, C, 1)


class AttentionHeads(nn.Module):
    """K binary classifiers, each with its own C-channel attention mask (Table 2, Eq. 9).

    Parameters: ``mask_weight`` (K, C, C) and ``mask_bias`` (K, C) are the K 1x1 convs A_k, a_k;
    ``weight`` (K, C) and ``bias`` (K,) the K linear classifiers w_k, b_k.
    Buffers (model state changed by operations, saved with the weights): ``transform_n`` and
    ``transform_beta`` (K,), the per-attribute mask transformation (identity: n = 1, beta = 0).
    """

    has_masks = True
    # what physical pruning cuts: parameter or buffer -> its dimensions indexed by the C channels
    channel_dims = {"mask_weight": (1, 2), "mask_bias": (1,), "weight": (1,)}

    def __init__(self, num_attributes: int, channels: int, impl: str = "fused", chunk_mb: float = 0):
        super().__init__()
        K, C = num_attributes, channels
        bound = 1.0 / math.sqrt(C)
        self.mask_weight = nn.Parameter(torch.empty(K, C, C).uniform_(-bound, bound))
        self.mask_bias = nn.Parameter(torch.zeros(K, C))
        self.weight = nn.Parameter(torch.empty(K, C).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(K))
        self.register_buffer("transform_n", torch.ones(K))
        self.register_buffer("transform_beta", torch.zeros(K))
        self.impl = impl
        self.chunk_mb = chunk_mb

    @property
    def transform_active(self) -> bool:
        return bool((self.transform_n != 1).any() or (self.transform_beta != 0).any())

    def masks(self, z: torch.Tensor, transformed: bool = False) -> torch.Tensor:
        """Attention masks (B, K, C, H, W) in (0, 1); small batches only (this is the full tensor)."""
        B, C, H, W = z.shape
        m = torch.sigmoid(_mask_logits(z.reshape(B, C, H * W), self.mask_weight, self.mask_bias))
        if transformed:
            K = m.shape[1]
            m = mask_transform(m, self.transform_n.view(1, K, 1, 1), self.transform_beta.view(1, K, 1, 1))
        return m.view(B, -1, C, H, W)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, K) and the per-image mask sum over (k, c, h, w), shape (B,)."""
        B, C, H, W = z.shape
        zf = z.reshape(B, C, H * W)
        pooled, m_sum = self._pooled(zf)                            # (B, K, C), (B, K)
        logits = (pooled * self.weight).sum(-1) + self.bias         # (B, K)
        return logits, m_sum.sum(1)

    def pooled(self, z: torch.Tensor) -> torch.Tensor:
        """What each classifier reads: mean_hw(g(M^k) * z), shape (B, K, C); logit = pooled . w_k + b_k."""
        B, C, H, W = z.shape
        return self._pooled(z.reshape(B, C, H * W))[0]

    def logits_under(self, z: torch.Tensor, n: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """Logits (T, B, K) under T mask transformations at once: row t of ``n`` and ``beta`` (T, K)
        is one (n, beta) per attribute. For inference (no gradients); each mask is formed once."""
        B, C, H, W = z.shape
        zf = z.reshape(B, C, H * W)
        n = n.to(zf.device, torch.float32).reshape(-1, self.weight.shape[0])
        beta = beta.to(zf.device, torch.float32).reshape(n.shape)
        if self.impl == "naive":
            with torch.no_grad():
                pooled = torch.stack([_head_chunk(zf, self.mask_weight, self.mask_bias, nt, bt, True)[0]
                                      for nt, bt in zip(n, beta)])
        else:
            pooled = fused_pooled_many(zf, self.mask_weight, self.mask_bias, n, beta, chunk_mb=self.chunk_mb)
        return (pooled * self.weight).sum(-1) + self.bias

    @staticmethod
    def macs(K: int, C: int, positions: int) -> int:
        """Multiply-accumulates of the K masks and their pooling, then the classifiers."""
        return K * C * C * positions + 2 * K * C * positions + K * C

    def _pooled(self, zf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        transform = self.transform_active
        if self.impl == "naive":
            return _head_chunk(zf, self.mask_weight, self.mask_bias, self.transform_n,
                               self.transform_beta, transform)
        return fused_heads(zf, self.mask_weight, self.mask_bias, self.transform_n, self.transform_beta,
                           transform, chunk_mb=self.chunk_mb)


class LinearHeads(nn.Module):
    """The plain-CNN baseline: logit_k = w_k . GAP(z) + b_k, no masks."""

    has_masks = False
    channel_dims = {"linear.weight": (1,)}

    def __init__(self, num_attributes: int, channels: int):
        super().__init__()
        self.linear = nn.Linear(channels, num_attributes)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.linear(z.mean(dim=(2, 3))), z.new_zeros(z.shape[0])

    def pooled(self, z: torch.Tensor) -> torch.Tensor:
        """What each classifier reads: GAP(z) for every attribute, (B, K, C) (a broadcast view)."""
        K, C = self.linear.weight.shape
        return z.mean(dim=(2, 3))[:, None, :].expand(z.shape[0], K, C)

    @staticmethod
    def macs(K: int, C: int, positions: int) -> int:
        return K * C

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight

    @property
    def bias(self) -> torch.Tensor:
        return self.linear.bias


@dataclass(frozen=True)
class HeadFamily:
    build: Callable[[int, int, HeadConfig], nn.Module]
    help: str


HEADS: Registry[HeadFamily] = Registry("--head")
HEADS.register("attention")(HeadFamily(
    lambda K, C, config: AttentionHeads(K, C, config.head_impl, config.head_chunk_mb),
    "the paper's heads: one C x C channel attention mask per attribute (Table 2, Eq. 9)"))
HEADS.register("linear")(HeadFamily(
    lambda K, C, config: LinearHeads(K, C), "GAP + linear, no masks (the plain-CNN baseline)"))


def build_heads(config: HeadConfig) -> nn.Module:
    return HEADS.get(config.head).build(config.num_attributes, config.channels, config)
