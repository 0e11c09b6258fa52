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

To add a head family: one class here, registered in :data:`HEADS`, plus its test.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..core.tone import mask_transform
from ..errors import HPNetError
from ..registry import Registry
from .fused import fused_heads, fused_pooled_many

HEAD_IMPLS = ("fused", "naive")


class HeadConfig(Protocol):
    """What a head family reads of the model's configuration."""

    head: str
    num_attributes: int
    channels: int
    widths: tuple[int, ...]
    head_impl: str
    head_chunk_mb: float


def _head_chunk(z: torch.Tensor, mask_w: torch.Tensor, mask_b: torch.Tensor, n: torch.Tensor,
                beta: torch.Tensor, transform: bool, u: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The naive reference: pooled features and mask sums through the whole (B, k, C, HW) masks.

    z (B, C, HW); the masks read z (mask_w (k, C, C)) or u (B, U, HW) when given (mask_w
    (k, C, U)); mask_b (k, C); n, beta (k,). hpnet.model.fused computes the same without the full
    tensor and is tested against this.
    Returns pooled (B, k, C) = mean_hw(g(M) * z) and the sum of M over (C, HW), shape (B, k).
    """
    B, C, HW = z.shape
    k = mask_w.shape[0]
    m = torch.sigmoid(_mask_logits(z if u is None else u, mask_w, mask_b))   # (B, k, C, HW)
    m_sum = m.sum(dim=(2, 3))                                       # (B, k)
    if transform:
        m = mask_transform(m, n.view(1, k, 1, 1), beta.view(1, k, 1, 1))
    pooled = torch.einsum("bkcp,bcp->bkc", m, z) / HW               # (B, k, C)
    return pooled, m_sum


def _mask_logits(x: torch.Tensor, mask_w: torch.Tensor, mask_b: torch.Tensor) -> torch.Tensor:
    """A_k x + a_k for a chunk of heads as one matrix product, x (B, U, HW), mask_w (k, C, U):
    (B, k, C, HW)."""
    B, U, HW = x.shape
    k, C = mask_w.shape[:2]
    out = torch.matmul(mask_w.reshape(k * C, U).to(x.dtype), x)     # (B, k*C, HW)
    return out.view(B, k, C, HW) + mask_b.view(1, k, C, 1)


def _pool(m: torch.Tensor, zf: torch.Tensor) -> torch.Tensor:
    """sum_p m[b, k, c, p] z[b, c, p]: (B, k, C). A product and a sum, not an einsum: that becomes a
    batch of B*C matrix-vector products, whose backward costs more than the masks (measured)."""
    return torch.mul(m, zf.unsqueeze(1)).sum(-1)


class MaskHeads(nn.Module):
    """What every head family with masks shares: logit_k = w_k . mean_hw(g(M_k) * z) + b_k.

    Subclasses create the parameters (``weight`` (K, C), ``bias`` (K,) and their mask's) and the
    transformation buffers, and give the mask logits of a block of heads (:meth:`mask_logits`). The
    pooled features are computed a block of heads at a time (``impl="fused"``: blocks of about
    ``chunk_mb`` MB, recomputed in backward, so the whole (B, K, C, H, W) mask tensor is never held)
    or at once (``impl="naive"``, the reference); :class:`DenseMaskHeads` replace the blocks by the
    fused tiles.
    """

    has_masks = True
    needs_context = False
    CPU_CHUNK_MB = 4       # a tile's masks stay in the caches
    CUDA_CHUNK_MB = 256

    def _init_transform(self, K: int) -> None:
        self.register_buffer("transform_n", torch.ones(K))
        self.register_buffer("transform_beta", torch.zeros(K))

    @property
    def transform_active(self) -> bool:
        return bool((self.transform_n != 1).any() or (self.transform_beta != 0).any())

    def mask_logits(self, z: torch.Tensor, context: torch.Tensor | None, h0: int, h1: int) -> torch.Tensor:
        """The logits of the masks of heads h0:h1: (B, h1 - h0, C, H*W)."""
        raise NotImplementedError

    def masks(self, z: torch.Tensor, transformed: bool = False, context: torch.Tensor | None = None) -> torch.Tensor:
        """Masks (B, K, C, H, W) in (0, 1); small batches only (this is the full tensor)."""
        self._check_context(context)
        B, C, H, W = z.shape
        m = torch.sigmoid(self.mask_logits(z, context, 0, self.weight.shape[0]))
        if transformed:
            K = m.shape[1]
            m = mask_transform(m, self.transform_n.view(1, K, 1, 1), self.transform_beta.view(1, K, 1, 1))
        return m.view(B, -1, C, H, W)

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, K) and the per-image mask sum over (k, c, h, w), shape (B,)."""
        pooled, m_sum = self._pooled(z, context)                    # (B, K, C), (B, K)
        logits = (pooled * self.weight).sum(-1) + self.bias         # (B, K)
        return logits, m_sum.sum(1)

    def pooled(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """What each classifier reads: mean_hw(g(M^k) * z), shape (B, K, C); logit = pooled . w_k + b_k."""
        return self._pooled(z, context)[0]

    def logits_under(self, z: torch.Tensor, n: torch.Tensor, beta: torch.Tensor,
                     context: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (T, B, K) under T mask transformations at once: row t of ``n`` and ``beta`` (T, K)
        is one (n, beta) per attribute. For inference (no gradients); each mask is formed once."""
        self._check_context(context)
        K = self.weight.shape[0]
        n = n.to(z.device, torch.float32).reshape(-1, K)
        beta = beta.to(z.device, torch.float32).reshape(n.shape)
        rows = []
        with torch.no_grad():
            for zi, ci, heads in self._tiles(z, context):
                zf = zi.reshape(zi.shape[0], zi.shape[1], -1)
                parts = []
                for h0, h1 in heads:
                    m = torch.sigmoid(self.mask_logits(zi, ci, h0, h1))       # (b, k, C, HW)
                    k = h1 - h0
                    parts.append(torch.stack([
                        _pool(mask_transform(m, nt[h0:h1].view(1, k, 1, 1), bt[h0:h1].view(1, k, 1, 1)), zf)
                        for nt, bt in zip(n, beta)]))                           # (T, b, k, C)
                rows.append(torch.cat(parts, 2))
        pooled = torch.cat(rows, 1) / (z.shape[-2] * z.shape[-1])
        return (pooled * self.weight).sum(-1) + self.bias

    def _pooled(self, z: torch.Tensor, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_context(context)
        transform = self.transform_active
        recompute = torch.is_grad_enabled() and self.impl != "naive"      # recompute each tile in backward
        pooled, sums = [], []
        for zi, ci, heads in self._tiles(z, context):
            parts = [checkpoint(self._block, zi, ci, h0, h1, transform, use_reentrant=False) if recompute
                     else self._block(zi, ci, h0, h1, transform) for h0, h1 in heads]
            pooled.append(torch.cat([p for p, _ in parts], 1))
            sums.append(torch.cat([s for _, s in parts], 1))
        return torch.cat(pooled, 0), torch.cat(sums, 0)

    def _block(self, z: torch.Tensor, context: torch.Tensor | None, h0: int, h1: int,
               transform: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features (B, k, C) and mask sums (B, k) of heads h0:h1."""
        k = h1 - h0
        zf = z.reshape(z.shape[0], z.shape[1], -1)                  # (B, C, HW)
        m = torch.sigmoid(self.mask_logits(z, context, h0, h1))       # (B, k, C, HW)
        m_sum = m.sum(dim=(2, 3))
        if transform:
            m = mask_transform(m, self.transform_n[h0:h1].view(1, k, 1, 1), self.transform_beta[h0:h1].view(1, k, 1, 1))
        return _pool(m, zf) / zf.shape[-1], m_sum

    def _tiles(self, z: torch.Tensor, context: torch.Tensor | None):
        """(z of a slice of images, its context, blocks of heads): tiles whose masks fit ``chunk_mb``
        MB (all heads and images at once for "naive"). A tile is as many heads of every image as
        fit; when one head of every image does not fit, one head of as many images as fit."""
        B, K = z.shape[0], self.weight.shape[0]
        budget = (self.chunk_mb or (self.CUDA_CHUNK_MB if z.is_cuda else self.CPU_CHUNK_MB)) * (1 << 20)
        per_image_head = max(1, z[0].numel() * 4)
        if self.impl == "naive" or B == 0:
            images, heads = max(B, 1), K
        elif B * per_image_head <= budget:
            images, heads = B, max(1, min(K, int(budget // (B * per_image_head))))
        else:
            images, heads = max(1, int(budget // per_image_head)), 1
        blocks = [(h0, min(h0 + heads, K)) for h0 in range(0, K, heads)]
        for i0 in range(0, max(B, 1), images):
            part = context[i0:i0 + images] if context is not None else None
            yield z[i0:i0 + images], part, blocks

    def _check_context(self, context: torch.Tensor | None) -> None:
        if self.needs_context and context is None:
            raise HPNetError("these heads read context features beside z: get both with model.encode(x)")


class DenseMaskHeads(MaskHeads):
    """Heads whose masks are one matrix product of features: M_k = sigmoid(A_k x + a_k), x = z
    (the paper's) or the context u. Computed by the hand-fused tiles of :mod:`hpnet.model.fused`
    (``impl="fused"``) or through the whole mask tensor (``impl="naive"``, the reference)."""

    def _mask_input(self, z: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor | None:
        """What the masks read beside z: None (z itself) or the context."""
        return None

    def mask_logits(self, z: torch.Tensor, context: torch.Tensor | None, h0: int, h1: int) -> torch.Tensor:
        x = self._flat_input(z, context)
        x = z.flatten(2) if x is None else x
        return _mask_logits(x, self.mask_weight[h0:h1], self.mask_bias[h0:h1])

    def logits_under(self, z: torch.Tensor, n: torch.Tensor, beta: torch.Tensor,
                     context: torch.Tensor | None = None) -> torch.Tensor:
        self._check_context(context)
        B, C, H, W = z.shape
        zf, uf = z.reshape(B, C, H * W), self._flat_input(z, context)
        n = n.to(zf.device, torch.float32).reshape(-1, self.weight.shape[0])
        beta = beta.to(zf.device, torch.float32).reshape(n.shape)
        if self.impl == "naive":
            with torch.no_grad():
                pooled = torch.stack([_head_chunk(zf, self.mask_weight, self.mask_bias, nt, bt, True, uf)[0]
                                      for nt, bt in zip(n, beta)])
        else:
            pooled = fused_pooled_many(zf, self.mask_weight, self.mask_bias, n, beta, chunk_mb=self.chunk_mb,
                                       context=uf)
        return (pooled * self.weight).sum(-1) + self.bias

    def _pooled(self, z: torch.Tensor, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_context(context)
        B, C, H, W = z.shape
        zf, uf = z.reshape(B, C, H * W), self._flat_input(z, context)
        transform = self.transform_active
        if self.impl == "naive":
            return _head_chunk(zf, self.mask_weight, self.mask_bias, self.transform_n,
                               self.transform_beta, transform, uf)
        return fused_heads(zf, self.mask_weight, self.mask_bias, self.transform_n, self.transform_beta,
                           transform, chunk_mb=self.chunk_mb, context=uf)

    def _flat_input(self, z: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor | None:
        x = self._mask_input(z, context)
        return None if x is None else x.reshape(x.shape[0], x.shape[1], -1)


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
