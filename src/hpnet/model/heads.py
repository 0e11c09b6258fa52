"""The K binary classifiers on top of the features z, one registry entry per head family.

Every head family is an ``nn.Module`` built from the model config (through :func:`build_heads`)
with what operations and analyses use of it:

- ``forward(z, context)`` -> (logits (B, K), per-image mask sum (B,)) and ``pooled(z, context)`` ->
  (B, K, C), what each classifier reads (logit_k = pooled[:, k] . w_k + b_k);
- ``weight`` (K, C) and ``bias`` (K,): the classifiers w_k, b_k;
- ``needs_context``: the head's masks read ``context``, features that channel pruning does not
  remove (``HPNet.encode`` gives them beside z; None for the other heads);
- ``has_masks``; with masks also ``masks(z, transformed, context)`` (B, K, C, H, W),
  ``logits_under(z, n, beta, context)`` and the transformation buffers ``transform_n``,
  ``transform_beta`` (K,);
- ``channel_dims``: which dimensions of which parameters are indexed by the C channels of z, so
  that physical pruning can cut any head family; ``macs(positions)`` for the MAC count.

The families:

- ``attention`` (the paper's): M_k = sigmoid(A_k z + a_k), A_k a C x C 1x1 conv. Every mask reads
  every channel, so pruning channel c moves the masks of all the others.
- ``channel``: M_kc = sigmoid(D_kc * z_c + a_kc), D_kc a 3x3 filter on channel c alone (depthwise):
  logit_k is a sum of per-channel terms and removing channel c removes exactly its term.
- ``context``: M_k = sigmoid(A_k u + a_k) with u the previous block's output (pooled to z's size):
  the masks see every channel of u, which pruning z never removes, so pruning channel c of z
  removes exactly its term too.
- ``linear``: GAP + linear, no masks (the plain CNN).

The machinery the families with masks share (:class:`MaskHeads`, :class:`DenseMaskHeads`, the naive
reference ``_head_chunk``) is in :mod:`.mask_heads`, re-exported here.

To add a head family: one class here, registered in :data:`HEADS`, plus its test.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import HPNetError
from ..registry import Registry
from . import channel_fused
# what the families with masks share (re-exported: callers import them from here)
from .mask_heads import DenseMaskHeads, MaskHeads, _head_chunk, _mask_logits, _pool  # noqa: F401

HEAD_IMPLS = ("fused", "naive")


class HeadConfig(Protocol):
    """What a head family reads of the model's configuration."""

    head: str
    num_attributes: int
    channels: int
    widths: tuple[int, ...]
    head_impl: str
    head_chunk_mb: float


class AttentionHeads(DenseMaskHeads):
    """K binary classifiers, each with its own C-channel attention mask (Table 2, Eq. 9).

    Parameters: ``mask_weight`` (K, C, C) and ``mask_bias`` (K, C) are the K 1x1 convs A_k, a_k;
    ``weight`` (K, C) and ``bias`` (K,) the K linear classifiers w_k, b_k.
    Buffers (model state changed by operations, saved with the weights): ``transform_n`` and
    ``transform_beta`` (K,), the per-attribute mask transformation (identity: n = 1, beta = 0).
    The heads are computed by the hand-fused tiles of :mod:`hpnet.model.fused`.
    """

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
        self._init_transform(K)
        self.impl = impl
        self.chunk_mb = chunk_mb

    def macs(self, positions: int) -> int:
        """Multiply-accumulates of the K masks and their pooling, then the classifiers."""
        K, C = self.weight.shape
        return K * C * C * positions + 2 * K * C * positions + K * C


class ChannelHeads(MaskHeads):
    """Per-channel masks: M_kc = sigmoid(D_kc * z_c + a_kc), D_kc a 3x3 filter on channel c alone.

    On CPU (float32, float64) computed by the compiled loops of :mod:`.channel_fused` (whole
    planes per tile, never the mask tensor); elsewhere by blocks of torch ops (:class:`MaskHeads`).

    Parameters: ``mask_weight`` (K, C, 3, 3), ``mask_bias`` (K, C), ``weight`` (K, C), ``bias`` (K,).
    logit_k = b_k + sum_c w_kc mean_hw(g(M_kc) z_c): a sum of per-channel terms, and a channel
    that is zero (pruned) contributes exactly nothing. K*C*9 mask parameters instead of K*C*C.
    """

    channel_dims = {"mask_weight": (1,), "mask_bias": (1,), "weight": (1,)}

    def __init__(self, num_attributes: int, channels: int, impl: str = "fused", chunk_mb: float = 0):
        super().__init__()
        K, C = num_attributes, channels
        self.mask_weight = nn.Parameter(torch.empty(K, C, 3, 3).uniform_(-1 / 3, 1 / 3))
        self.mask_bias = nn.Parameter(torch.zeros(K, C))
        bound = 1.0 / math.sqrt(C)
        self.weight = nn.Parameter(torch.empty(K, C).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(K))
        self._init_transform(K)
        self.impl = impl
        self.chunk_mb = chunk_mb

    def mask_logits(self, z: torch.Tensor, context: torch.Tensor | None, h0: int, h1: int) -> torch.Tensor:
        B, C, H, W = z.shape
        k = h1 - h0
        filters = self.mask_weight[h0:h1].transpose(0, 1).reshape(C * k, 1, 3, 3)   # group c: its k filters
        out = F.conv2d(z, filters.to(z.dtype), padding=1, groups=C)                  # (B, C*k, H, W)
        out = out.reshape(B, C, k, H * W).transpose(1, 2)                            # (B, k, C, HW)
        return out + self.mask_bias[h0:h1].view(1, k, C, 1)

    def macs(self, positions: int) -> int:
        K, C = self.weight.shape
        return K * C * 9 * positions + 2 * K * C * positions + K * C

    def _pooled(self, z: torch.Tensor, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The compiled loops of :mod:`.channel_fused` where they apply, else blocks of torch ops."""
        if self.impl != "fused" or not channel_fused.usable(z):
            return super()._pooled(z, context)
        return channel_fused.channel_heads(z, self.mask_weight, self.mask_bias, self.transform_n,
                                           self.transform_beta, self.transform_active)

    def logits_under(self, z: torch.Tensor, n: torch.Tensor, beta: torch.Tensor,
                     context: torch.Tensor | None = None) -> torch.Tensor:
        if self.impl != "fused" or not channel_fused.usable(z):
            return super().logits_under(z, n, beta, context)
        K = self.weight.shape[0]
        n = n.to(z.device, torch.float32).reshape(-1, K)
        pooled = channel_fused.channel_pooled_many(z, self.mask_weight, self.mask_bias, n,
                                                   beta.to(z.device, torch.float32).reshape(n.shape))
        return (pooled * self.weight).sum(-1) + self.bias


class ContextHeads(DenseMaskHeads):
    """Masks from context features u that pruning never removes: M_k = sigmoid(A_k u + a_k).

    u (B, C_u, H, W) is the previous block's output, average-pooled to z's size (``HPNet.encode``).
    Parameters: ``mask_weight`` (K, C, C_u), ``mask_bias`` (K, C), ``weight`` (K, C), ``bias`` (K,).
    Pruning channel c of z removes row c of every A_k and channel c's term; no other mask moves.
    Computed by the same fused tiles as the paper's heads, the masks reading u instead of z.
    """

    needs_context = True
    channel_dims = {"mask_weight": (1,), "mask_bias": (1,), "weight": (1,)}

    def __init__(self, num_attributes: int, channels: int, context_channels: int, impl: str = "fused",
                 chunk_mb: float = 0):
        super().__init__()
        K, C, U = num_attributes, channels, context_channels
        bound = 1.0 / math.sqrt(U)
        self.mask_weight = nn.Parameter(torch.empty(K, C, U).uniform_(-bound, bound))
        self.mask_bias = nn.Parameter(torch.zeros(K, C))
        bound = 1.0 / math.sqrt(C)
        self.weight = nn.Parameter(torch.empty(K, C).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(K))
        self._init_transform(K)
        self.impl = impl
        self.chunk_mb = chunk_mb

    def _mask_input(self, z: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor | None:
        return context

    def macs(self, positions: int) -> int:
        K, C, U = self.mask_weight.shape
        return K * C * U * positions + 2 * K * C * positions + K * C


class LinearHeads(nn.Module):
    """The plain-CNN baseline: logit_k = w_k . GAP(z) + b_k, no masks."""

    has_masks = False
    needs_context = False
    reads_chunks = True          # see MaskHeads.reads_chunks
    channel_dims = {"linear.weight": (1,)}

    def __init__(self, num_attributes: int, channels: int):
        super().__init__()
        self.linear = nn.Linear(channels, num_attributes)

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.linear(z.mean(dim=(2, 3))), z.new_zeros(z.shape[0])

    def pooled(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """What each classifier reads: GAP(z) for every attribute, (B, K, C) (a broadcast view)."""
        K, C = self.linear.weight.shape
        return z.mean(dim=(2, 3))[:, None, :].expand(z.shape[0], K, C)

    def macs(self, positions: int) -> int:
        K, C = self.weight.shape
        return K * C

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight

    @property
    def bias(self) -> torch.Tensor:
        return self.linear.bias


@dataclass(frozen=True)
class HeadFamily:
    """``build(K, C, config)`` makes the heads (of class ``kind``); ``check(config)`` raises on a
    config they cannot use."""

    kind: type[nn.Module]
    build: Callable[[int, int, HeadConfig], nn.Module]
    help: str
    check: Callable[[HeadConfig], object] = lambda config: None

    @property
    def masks(self) -> bool:
        """Whether the heads have masks (and a mask transformation): the class says, nothing else."""
        return bool(self.kind.has_masks)


HEADS: Registry[HeadFamily] = Registry("--head")
HEADS.register("attention")(HeadFamily(
    AttentionHeads, lambda K, C, config: AttentionHeads(K, C, config.head_impl, config.head_chunk_mb),
    "the paper's heads: one C x C channel attention mask per attribute (Table 2, Eq. 9)"))
HEADS.register("channel")(HeadFamily(
    ChannelHeads, lambda K, C, config: ChannelHeads(K, C, config.head_impl, config.head_chunk_mb),
    "per-channel masks (a 3x3 filter on each channel alone): pruning a channel removes exactly its term"))
HEADS.register("context")(HeadFamily(
    ContextHeads, lambda K, C, config: ContextHeads(K, C, _context_channels(config), config.head_impl, config.head_chunk_mb),
    "masks from the previous block's output, which pruning never removes: pruning a channel removes "
    "exactly its term", check=lambda config: _context_channels(config)))
HEADS.register("linear")(HeadFamily(
    LinearHeads, lambda K, C, config: LinearHeads(K, C), "GAP + linear, no masks (the plain-CNN baseline)"))


def _context_channels(config: HeadConfig) -> int:
    if len(config.widths) < 2:
        raise HPNetError("--head context reads the previous block's output: the backbone needs at least "
                         "2 layers (--widths)")
    return config.widths[-2]


def build_heads(config: HeadConfig) -> nn.Module:
    return HEADS.get(config.head).build(config.num_attributes, config.channels, config)
