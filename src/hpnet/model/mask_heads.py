"""What the head families with masks share: the mask tiles, :class:`MaskHeads` and :class:`DenseMaskHeads`.

:class:`MaskHeads` computes logit_k = w_k . mean_hw(g(M_k) * z) + b_k a block of heads at a time
from a subclass's mask logits; :class:`DenseMaskHeads` (masks that are one matrix product of
features) replace the blocks by the hand-fused tiles of :mod:`hpnet.model.fused`. ``_head_chunk``
is the naive reference those tiles are tested against. The families themselves and their registry
are in :mod:`hpnet.model.heads`.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from ..core.tone import mask_transform
from ..errors import HPNetError
from .fused import fused_heads, fused_pooled_many


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
    # CPU inference runs the heads on each chunk of images the extractor runs on (HPNet.forward):
    # light per-position work gains from features still in cache (the channel heads of the
    # paper's config: 96.8 -> 102 img/s); the dense heads' matrix products lose (32.6 -> 30.3)
    reads_chunks = True
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

    reads_chunks = False

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
