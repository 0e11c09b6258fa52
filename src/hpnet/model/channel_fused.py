"""Fused ``channel`` heads on CPU: pooled features and mask sums without the (B, K, C, H, W) masks.

For head k, image b, channel c and position p (HW positions per image):

    x = D_kc * z_c + a_kc  (3x3 correlation of channel c alone, zero padding)
    M = sigmoid(x),   G = g(M; n_k, beta_k)
    pooled[b, k, c] = sum_p G z_c / HW        msum[b, k] = sum_{c, p} M

The work is cut into tiles of whole planes, a block of images x a block of channels with every
head, run by the compiled loops of :mod:`hpnet.model._channel_kernels` on one worker thread per
intra-op thread (the pool of :mod:`hpnet.model.tiles`). Forward saves only its inputs; backward
recomputes the masks and applies the hand-derived gradients (gp = dL/dpooled, gs = dL/dmsum):

    dM = gp / HW z g'(M) + gs      dx = dM M (1 - M)
    dD_kc = sum_{b, p} dx (z_c shifted)      da_kc = sum_{b, p} dx
    dz_c = sum_k (gp / HW G + the transposed correlation of dx with D_kc)

Every tile writes its own images and channels of the outputs and its own block of images' filter
gradients, added up in a fixed order: results are bit-identical whatever the thread count.

These loops run on CPU for float32 and float64 features (:func:`usable`); elsewhere (CUDA,
bfloat16 under autocast, no C compiler, ``USE_KERNELS`` off) the heads use the blocks of torch
ops of :class:`hpnet.model.mask_heads.MaskHeads`, which autograd differentiates.
"""
from __future__ import annotations

import math
import threading

import torch

from . import _channel_kernels
from .tiles import _pool

USE_KERNELS = True   # the compiled loops where they apply (tests switch them off to compare)
TILES = 32           # tiles to share among the threads (fewer where there are fewer planes)
CHANNELS = 16        # channels per tile: one cache line of channels-last features
STRIP = 1024         # positions per strip of rows: a strip's copies stay in the first-level cache


def usable(z: torch.Tensor) -> bool:
    """Whether the compiled loops take these features: CPU, float32 or float64, loops built."""
    return (USE_KERNELS and z.device.type == "cpu" and z.dtype in (torch.float32, torch.float64)
            and _channel_kernels.library() is not None)


def plan_tiles(B: int, C: int, H: int, W: int) -> tuple[int, int, int]:
    """(images, channels, rows) per tile: blocks of CHANNELS channels, the images cut into as
    many blocks as make about TILES tiles, strips of about STRIP positions. Depends on the shapes
    only, never on the thread count (the filter gradients are summed per block of images)."""
    channels = min(C, CHANNELS)
    image_blocks = max(1, min(B, TILES // math.ceil(C / channels)))
    return math.ceil(B / image_blocks), channels, max(1, min(H, STRIP // W))


@torch.compiler.disable  # opaque to torch.compile: it runs its own worker threads
def channel_heads(z: torch.Tensor, mask_weight: torch.Tensor, mask_bias: torch.Tensor,
                  transform_n: torch.Tensor, transform_beta: torch.Tensor, transform: bool,
                  tiles: tuple[int, int, int] | None = None, threads: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features (B, K, C) = mean_p g(M) z and mask sums (B, K) of features z (B, C, H, W).

    mask_weight (K, C, 3, 3), mask_bias (K, C), transform_n and transform_beta (K,). ``tiles`` =
    (images, channels, rows per strip) overrides :func:`plan_tiles`; ``threads``: worker threads
    (0: torch.get_num_threads()). Outputs in z's dtype; gradients flow to z, mask_weight and
    mask_bias.
    """
    B, C, H, W = z.shape
    if B == 0:  # nothing to tile
        K = mask_weight.shape[0]
        return z.new_zeros(0, K, C), z.new_zeros(0, K)
    setup = (tiles or plan_tiles(B, C, H, W), threads or torch.get_num_threads())
    return _ChannelHeads.apply(z, mask_weight, mask_bias, transform_n, transform_beta, bool(transform), setup)


@torch.compiler.disable
def channel_pooled_many(z: torch.Tensor, mask_weight: torch.Tensor, mask_bias: torch.Tensor,
                        transform_n: torch.Tensor, transform_beta: torch.Tensor,
                        tiles: tuple[int, int, int] | None = None, threads: int = 0) -> torch.Tensor:
    """Pooled features (T, B, K, C) under T mask transformations at once (rows of ``transform_n``
    and ``transform_beta``, (T, K)): each mask is formed once. For inference (no gradients)."""
    B, C, H, W = z.shape
    K = mask_weight.shape[0]
    n, beta = transform_n.reshape(-1, K), transform_beta.reshape(-1, K)
    if n.shape != beta.shape:
        raise ValueError(f"transform_n {tuple(n.shape)} and transform_beta {tuple(beta.shape)} differ")
    if B == 0:
        return z.new_zeros(n.shape[0], 0, K, C)
    with torch.no_grad():
        call = _Call(z.detach(), mask_weight, mask_bias, n, beta,
                     (tiles or plan_tiles(B, C, H, W), threads or torch.get_num_threads()))
        _, pooled = call.forward()
    return pooled.div_(H * W)


class _Call:
    """One call's inputs as the loops take them (z with any strides: the loops copy each plane;
    the parameters contiguous, in z's dtype) and its tile walk."""

    def __init__(self, z: torch.Tensor, D: torch.Tensor, a: torch.Tensor, n: torch.Tensor | None,
                 beta: torch.Tensor | None, setup: tuple[tuple[int, int, int], int]):
        self.z = z
        dtype = self.z.dtype
        self.D = D.detach().to(dtype).contiguous()
        self.a = a.detach().to(dtype).contiguous()
        K = self.D.shape[0]
        self.n = n.detach().to(dtype).reshape(-1, K).contiguous() if n is not None else None
        self.beta = beta.detach().to(dtype).reshape(-1, K).contiguous() if beta is not None else None
        (self.images, self.channels, self.rows), self.threads = setup
        self.B, self.C, self.H, self.W = self.z.shape
        self.K = K
        self.lib = _channel_kernels.library()
        self.suffix = "f64" if dtype == torch.float64 else "f32"

    def tiles(self) -> list[tuple[int, int, int, int]]:
        """(b0, b1, c0, c1) of every tile, image blocks outermost."""
        return [(b0, min(b0 + self.images, self.B), c0, min(c0 + self.channels, self.C))
                for b0 in range(0, self.B, self.images) for c0 in range(0, self.C, self.channels)]

    def run(self, body) -> None:
        """``body(work, b0, b1, c0, c1)`` for every tile, on the worker threads."""
        tiles, lock = iter(self.tiles()), threading.Lock()
        size = _channel_kernels.work_size(self.H, self.W, self.channels, self.rows)

        def worker() -> None:
            work = torch.empty(size, dtype=self.z.dtype)
            while True:
                with lock:
                    tile = next(tiles, None)
                if tile is None:
                    return
                body(work, *tile)

        threads = min(self.threads, len(self.tiles()))
        if threads <= 1:
            worker()
            return
        for f in [_pool(threads).submit(worker) for _ in range(threads)]:
            f.result()

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mask sums (B, K, C) and sums of g_t(M) z (T, B, K, C) (T = 1 without
        transformations: the identity)."""
        B, K, C = self.B, self.K, self.C
        msum = torch.empty(B, K, C, dtype=self.z.dtype)
        out = torch.empty(self.n.shape[0] if self.n is not None else 1, B, K, C, dtype=self.z.dtype)
        fn = getattr(self.lib, f"channel_forward_{self.suffix}")
        T = self.n.shape[0] if self.n is not None else 0

        def body(work, b0, b1, c0, c1):
            fn(_at(self.z, b0 * self.z.stride(0) + c0 * self.z.stride(1)), *self.z.stride(), b1 - b0,
               c1 - c0, self.H, self.W, self.rows, _at(self.D, c0 * 9), _at(self.a, c0), K, C, T,
               _at(self.n), _at(self.beta), _at(msum, b0 * K * C + c0), _at(out, b0 * K * C + c0),
               K * C, B * K * C, _at(work))
        self.run(body)
        return msum, out

    def backward(self, coef: torch.Tensor, gs: torch.Tensor, need_z: bool):
        """dz (B, C, H, W) or None, and dD (K, C, 3, 3), da (K, C), from coef = dL/dpooled / HW
        (B, K, C) and gs = dL/dmsum (B, K)."""
        B, K, C, H, W = self.B, self.K, self.C, self.H, self.W
        coef, gs = coef.to(self.z.dtype).contiguous(), gs.to(self.z.dtype).contiguous()
        dz = torch.empty(B, C, H, W, dtype=self.z.dtype) if need_z else None
        blocks = math.ceil(B / self.images)                       # filter gradients per image block
        dD = torch.zeros(blocks, K, C, 9, dtype=self.z.dtype)
        da = torch.zeros(blocks, K, C, dtype=self.z.dtype)
        fn = getattr(self.lib, f"channel_backward_{self.suffix}")
        T = 1 if self.n is not None else 0

        def body(work, b0, b1, c0, c1):
            plane = b0 * C * H * W + c0 * H * W
            fn(_at(self.z, b0 * self.z.stride(0) + c0 * self.z.stride(1)), *self.z.stride(), b1 - b0, c1 - c0, H, W, self.rows,
               _at(self.D, c0 * 9), _at(self.a, c0), K, C, T, _at(self.n), _at(self.beta),
               _at(coef, b0 * K * C + c0), K * C, _at(gs, b0 * K), K,
               _at(dz, plane) if dz is not None else None, *(dz.stride() if dz is not None else (0,) * 4),
               _at(dD[b0 // self.images], c0 * 9), _at(da[b0 // self.images], c0), _at(work))
        self.run(body)
        return dz, dD.sum(0).view(K, C, 3, 3), da.sum(0)


def _at(t: torch.Tensor | None, offset: int = 0) -> int | None:
    """The address of element ``offset`` of a contiguous tensor (None for None)."""
    return None if t is None else t.data_ptr() + offset * t.element_size()


class _ChannelHeads(torch.autograd.Function):

    @staticmethod
    def forward(ctx, z, D, a, n, beta, transform, setup):
        B, C, H, W = z.shape
        call = _Call(z, D, a, n if transform else None, beta if transform else None, setup)
        msum, out = call.forward()
        ctx.save_for_backward(call.z, D, a, n, beta)
        ctx.setup = (transform, setup)
        return out[0].div_(H * W), msum.sum(-1)

    @staticmethod
    def backward(ctx, grad_pooled, grad_msum):
        z, D, a, n, beta = ctx.saved_tensors
        transform, setup = ctx.setup
        call = _Call(z, D, a, n if transform else None, beta if transform else None, setup)
        dz, dD, da = call.backward(grad_pooled / (call.H * call.W), grad_msum, ctx.needs_input_grad[0])
        need_z, need_D, need_a = ctx.needs_input_grad[:3]
        return (dz.to(z.dtype) if need_z else None, dD.to(D.dtype) if need_D else None,
                da.to(a.dtype) if need_a else None, None, None, None, None)
