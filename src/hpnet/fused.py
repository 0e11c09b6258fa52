"""Fused attention heads: pooled features and mask sums without the (B, K, C, H, W) mask tensor.

For head k, image b, channel c and position p (HW positions per image):

    P = A_k z_b + a_k,   M = sigmoid(P),   G = g(M; n_k, beta_k)
    pooled[b, k, c] = sum_p G[c, p] z[c, p] / HW        msum[b, k] = sum_{c, p} M[c, p]

The work is cut into tiles: a block of heads times a block of columns of the features seen as
(C, B*HW) (a part of one image, or several whole images). A tile's mask, (k*C, cols), is a few
MB: one matrix product writes it, and the elementwise work and reductions read it back while it
is still in cache; it is never kept. Forward saves only its inputs; backward recomputes each tile
and applies the hand-derived gradients (gp = dL/dpooled, gs = dL/dmsum):

    dG = gp[b, k, c] z[c, p] / HW      dM = dG g'(M) + gs[b, k]      dP = dM M (1 - M)
    dA_k = sum_{b, p} dP z^T           da_k = sum_{b, p} dP
    dz = sum_k A_k^T dP + sum_k gp[b, k, c] G / HW

so a training step costs four matrix products per tile (one forward, three backward) and holds
no temporary larger than a tile: memory does not grow with K, and the allocator never sees the
huge, short-lived blocks that glibc maps and unmaps (page faults at 100% system time).

On CPU the column blocks are shared out to one worker thread per intra-op thread, each running
single-threaded ops on its own tiles and workspace: no fork/join per small op, and a worker that
the OS deschedules does not stall the other (it takes less of the work). Sums are formed in a
fixed order, so results are bit-identical run to run and for any thread count. For float32
the elementwise work of a tile (sigmoid, the mask transformation, sums; in backward without a
transformation also dP and the direct term) is one pass of a small compiled loop
(hpnet._kernels) instead of a dozen torch ops; the matrix products stay in MKL, and torch ops
take over where the loops do not apply or cannot be built. On CUDA the tiles run in the calling thread, big enough to keep kernel launches few. Under autocast the
matrix products run in the autocast dtype; the elementwise work and all sums in float32.
"""
from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

from . import _kernels
from .ops.transform import mask_transform

# tile shape when the config says 0 ("auto"). CPU, measured on a 2-core AMD EPYC (512 KB L2 per
# core, 32 MB L3) for K = 40, C = 128: 512 columns and 8-20 heads (2-5 MB) train fastest; all 40
# heads on 512 columns (10 MB) is 25% slower, on 128 columns 15% slower. CUDA: big tiles, few
# kernel launches.
CPU_TILE_BYTES = 5 << 19
CPU_TILE_COLUMNS = 512
CUDA_TILE_BYTES = 512 << 20


def tile_budget(device: torch.device, chunk_mb: float = 0) -> int:
    """Bytes of one tile's mask: ``chunk_mb`` MB, or the device's default when it is 0."""
    if chunk_mb and chunk_mb > 0:
        return int(chunk_mb * (1 << 20))
    return CUDA_TILE_BYTES if device.type == "cuda" else CPU_TILE_BYTES


def plan_tiles(K: int, C: int, B: int, HW: int, budget: int, elem: int = 4,
               columns: int | None = CPU_TILE_COLUMNS) -> tuple[int, int]:
    """(heads per tile, columns per tile) for a tile of about ``budget`` bytes.

    Columns are a divisor of HW (a block inside one image) or a multiple of HW (whole images), so
    each tile's reductions stay per image; about ``columns`` of them (None: as many as fit), with
    as many heads as the budget allows, split evenly. When all K heads fit, the columns grow to
    fill the budget.
    """
    cols = _columns_up_to(columns or B * HW, B, HW)
    heads = budget // (C * elem * cols)
    if heads >= K:
        return K, _columns_up_to(max(cols, budget // (K * C * elem)), B, HW)
    if heads < 1:
        return 1, _columns_up_to(budget // (C * elem), B, HW)
    return math.ceil(K / math.ceil(K / heads)), cols


def _columns_up_to(limit: int, B: int, HW: int) -> int:
    if limit >= HW:
        return HW * min(B, limit // HW)
    return max(d for d in range(1, max(limit, 1) + 1) if HW % d == 0)


def tone_curve_grad(m: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """dh/dM of Eq. 12: n (2M)^(n-1) below 0.5, n (2(1-M))^(n-1) from 0.5 up."""
    low = n * (2.0 * m.clamp(max=0.5)) ** (n - 1.0)
    high = n * (2.0 * (1.0 - m).clamp(max=0.5)) ** (n - 1.0)
    return torch.where(m < 0.5, low, high)


@torch.compiler.disable  # opaque to torch.compile: it runs its own worker threads
def fused_heads(z: torch.Tensor, mask_weight: torch.Tensor, mask_bias: torch.Tensor,
                transform_n: torch.Tensor, transform_beta: torch.Tensor, transform: bool,
                tiles: tuple[int, int] | None = None, chunk_mb: float = 0, threads: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features (B, K, C) = mean_p g(M) z and mask sums (B, K) of features z (B, C, H, W).

    ``tiles`` = (heads, columns) per tile overrides the plan made from ``chunk_mb`` (0: auto).
    ``threads``: CPU worker threads (0: torch.get_num_threads()). Outputs are float32 (float64
    for float64 features); gradients flow to z, mask_weight and mask_bias.
    """
    B, C = z.shape[:2]
    K = mask_weight.shape[0]
    if B == 0:  # nothing to tile
        dtype = _output_dtype(z)
        return z.new_zeros(0, K, C, dtype=dtype), z.new_zeros(0, K, dtype=dtype)
    zf = z.reshape(B, C, -1)
    return _FusedHeads.apply(zf, mask_weight, mask_bias, transform_n, transform_beta, bool(transform),
                             _setup(zf, K, tiles, chunk_mb, threads))


@torch.compiler.disable  # opaque to torch.compile: it runs its own worker threads
def fused_pooled_many(z: torch.Tensor, mask_weight: torch.Tensor, mask_bias: torch.Tensor,
                      transform_n: torch.Tensor, transform_beta: torch.Tensor,
                      tiles: tuple[int, int] | None = None, chunk_mb: float = 0, threads: int = 0
                      ) -> torch.Tensor:
    """Pooled features (T, B, K, C) under T mask transformations at once, for inference.

    ``transform_n`` and ``transform_beta`` are (T, K): row t is one transformation of every head.
    Each tile's masks are formed once and every transformation pools them, so T transformations
    cost far less than T calls of :func:`fused_heads` (the robustness sweep). No gradients.
    """
    B, C = z.shape[:2]
    K = mask_weight.shape[0]
    n, beta = transform_n.reshape(-1, K), transform_beta.reshape(-1, K)
    if n.shape != beta.shape:
        raise ValueError(f"transform_n {tuple(n.shape)} and transform_beta {tuple(beta.shape)} differ")
    if B == 0:
        return z.new_zeros(n.shape[0], 0, K, C, dtype=_output_dtype(z))
    zf = z.reshape(B, C, -1)
    cdt = _compute_dtype(z)
    with torch.no_grad(), torch.autocast(z.device.type, enabled=False):
        pb = _Problem(zf.detach(), mask_weight, mask_bias, n, beta, True, cdt,
                      _setup(zf, K, tiles, chunk_mb, threads))
        pooled = _forward_sums(pb).pooled
    return pooled.div_(pb.HW).permute(0, 3, 1, 2)


def _setup(zf: torch.Tensor, K: int, tiles: tuple[int, int] | None, chunk_mb: float,
           threads: int) -> tuple[int, int, int]:
    """(heads, columns, threads) of the tile walk: ``tiles`` when given, else planned."""
    B, C, HW = zf.shape
    if tiles is None:
        tiles = plan_tiles(K, C, B, HW, tile_budget(zf.device, chunk_mb),
                           columns=None if zf.device.type == "cuda" else CPU_TILE_COLUMNS)
    return int(tiles[0]), int(tiles[1]), int(threads)


def _output_dtype(z: torch.Tensor) -> torch.dtype:
    return torch.float64 if z.dtype == torch.float64 else torch.float32


# ----------------------------------------------------------------------------------------------
# the tile walk


class _Block:
    """Columns j0:j1 of the (C, B*HW) feature layout: images b0:b1, positions p0:p0+np per image."""

    def __init__(self, j0: int, j1: int, HW: int):
        self.j0, self.j1 = j0, j1
        self.b0, self.b1 = j0 // HW, (j1 - 1) // HW + 1
        self.nb = self.b1 - self.b0
        self.p0, self.np = j0 - self.b0 * HW, min(HW, j1 - j0)

    @property
    def cols(self) -> int:
        return self.j1 - self.j0


class _Problem:
    """Shapes, dtypes and the tile walk of one call: column blocks times head blocks.

    z stays in its (B, C, HW) layout: a block inside one image is a strided (C, cols) view of it,
    a block of whole images is copied into (C, cols) by the worker that takes it.
    """

    def __init__(self, z: torch.Tensor, A: torch.Tensor, a: torch.Tensor, n: torch.Tensor,
                 beta: torch.Tensor, transform: bool, cdt: torch.dtype, setup: tuple[int, int, int]):
        heads, cols, threads = setup
        if z.stride(-1) != 1:  # blocks are (C, cols) matrices with unit column stride
            z = z.contiguous()
        self.B, self.C, self.HW = z.shape
        self.K = A.shape[0]
        self.cdt = cdt                                                # matrix products
        self.acc = torch.float64 if cdt == torch.float64 else torch.float32  # everything else
        self.z, self.transform = z, transform
        self.A, self.a = A.detach().to(cdt), a.detach().to(cdt)
        # (T, K): T = 1 for the model's own transformation, more for fused_pooled_many
        self.n = n.detach().to(self.acc).reshape(-1, self.K).contiguous()
        self.beta = beta.detach().to(self.acc).reshape(-1, self.K).contiguous()
        self.T = self.n.shape[0]
        self.heads = max(1, min(heads, self.K))
        if cols >= self.HW:
            cols = self.HW * max(1, cols // self.HW)
        elif self.HW % cols:
            raise ValueError(f"columns per tile ({cols}) must divide the positions per image ({self.HW})")
        self.cols = cols
        self.threads = threads or torch.get_num_threads()
        # the compiled per-tile loops (hpnet._kernels): float32 on CPU (backward: no transformation)
        self.kernels = (_kernels.library() if z.device.type == "cpu" and cdt == torch.float32
                        and z.dtype == torch.float32 and USE_KERNELS else None)

    @property
    def device(self) -> torch.device:
        return self.z.device

    def blocks(self) -> list[_Block]:
        total = self.B * self.HW
        return [_Block(j0, min(j0 + self.cols, total), self.HW) for j0 in range(0, total, self.cols)]

    def head_blocks(self):
        for h0 in range(0, self.K, self.heads):
            yield h0, min(h0 + self.heads, self.K)

    def features(self, blk: _Block) -> torch.Tensor:
        """The block's features as (C, cols) in the matrix-product dtype."""
        if blk.nb == 1:
            zt = self.z[blk.b0, :, blk.p0:blk.p0 + blk.np]
        else:
            zt = self.z[blk.b0:blk.b1].transpose(0, 1).reshape(self.C, blk.cols)
        return zt.to(self.cdt)

    def masks(self, work: "_Workspace", h0: int, h1: int, zt: torch.Tensor) -> torch.Tensor:
        """M = sigmoid(A z + a) of heads h0:h1 on features zt (C, cols): (k*C, cols), acc dtype."""
        C = self.C
        rows, width = (h1 - h0) * C, zt.shape[1]
        w, b = self.A[h0:h1].reshape(rows, C), self.a[h0:h1].reshape(rows, 1)
        m = work.buf[:rows * width].view(rows, width)
        if work.low_buf is None:
            torch.addmm(b, w, zt, out=m)
        else:
            p = work.low_buf[:rows * width].view(rows, width)
            torch.addmm(b, w, zt, out=p)
            m.copy_(p)
        return m.sigmoid_()

    def logits(self, work: "_Workspace", h0: int, h1: int, zt: torch.Tensor) -> torch.Tensor:
        """A z of heads h0:h1 (no bias: the compiled loops add it), (k*C, cols) float32."""
        rows = (h1 - h0) * self.C
        p = work.buf[:rows * zt.shape[1]].view(rows, zt.shape[1])
        return torch.mm(self.A[h0:h1].reshape(rows, self.C), zt, out=p)

    def transform_params(self, h0: int, h1: int, t: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (h1 - h0, 1, 1, 1)
        return self.n[t, h0:h1].view(shape), self.beta[t, h0:h1].view(shape)


class _Workspace:
    """Two tile buffers (and one in the matrix-product dtype under autocast), reused by every tile
    of one worker: no allocation per tile."""

    def __init__(self, pb: _Problem):
        size = pb.heads * pb.C * pb.cols
        self.buf = torch.empty(size, dtype=pb.acc, device=pb.device)
        self.buf2 = torch.empty(size, dtype=pb.acc, device=pb.device)
        self.low_buf = torch.empty(size, dtype=pb.cdt, device=pb.device) if pb.cdt != pb.acc else None
        self.dz_block = None
        self.rows = None

    def scratch_rows(self, pb: _Problem) -> torch.Tensor:
        """Somewhere for the compiled loops to put row sums nobody asked for (K*C, zeroed)."""
        if self.rows is None:
            self.rows = torch.zeros(pb.K * pb.C, dtype=pb.acc, device=pb.device)
        return self.rows

    def dz(self, pb: _Problem, blk: _Block) -> torch.Tensor:
        """A zeroed (C, cols) buffer for the gradient of a block of several images."""
        if self.dz_block is None:
            self.dz_block = torch.empty(pb.C * pb.cols, dtype=pb.acc, device=pb.device)
        return self.dz_block[:pb.C * blk.cols].view(pb.C, blk.cols).zero_()

    def second(self, like: torch.Tensor) -> torch.Tensor:
        return self.buf2[:like.numel()].view(like.shape)

    def low(self, m: torch.Tensor) -> torch.Tensor:
        """m in the matrix-product dtype (m itself when that is the accumulation dtype)."""
        if self.low_buf is None:
            return m
        return self.low_buf[:m.numel()].view(m.shape).copy_(m)


# ----------------------------------------------------------------------------------------------
# one column block, forward and backward


class _ForwardSums:
    def __init__(self, pb: _Problem):
        self.pooled = torch.zeros(pb.T, pb.K, pb.C, pb.B, dtype=pb.acc, device=pb.device)
        self.msum = torch.zeros(pb.K, pb.B, dtype=pb.acc, device=pb.device)

    @staticmethod
    def add(total: "_ForwardSums", part: "_ForwardSums") -> "_ForwardSums":
        total.pooled += part.pooled
        total.msum += part.msum
        return total


def _forward_block(pb: _Problem, work: _Workspace, acc: _ForwardSums, blk: _Block) -> None:
    C, nb, np_, b0, b1 = pb.C, blk.nb, blk.np, blk.b0, blk.b1
    zt = pb.features(blk)
    if pb.kernels is not None:
        zt = zt.contiguous()  # rows HW apart alias in the caches; the loops read them once per head
        for h0, h1 in pb.head_blocks():
            kh = h1 - h0
            p = pb.logits(work, h0, h1, zt)
            sums = torch.empty(1 + pb.T, kh * C, nb)                        # M sums, then g_t(M) z sums
            T, tn, tb = (pb.T, pb.n[0, h0:].data_ptr(), pb.beta[0, h0:].data_ptr()) if pb.transform else (0, None, None)
            pb.kernels.heads_forward(p.data_ptr(), kh * C, nb, np_, C, zt.data_ptr(), zt.stride(0),
                                     pb.a[h0:h1].data_ptr(), T, tn, tb, pb.K, sums[0].data_ptr(),
                                     sums[1].data_ptr())
            acc.msum[h0:h1, b0:b1] += sums[0].view(kh, C, nb).sum(1)
            acc.pooled[:, h0:h1, :, b0:b1] += sums[1:].view(pb.T, kh, C, nb)
        return
    z4 = zt.to(pb.acc).view(1, C, nb, np_)
    for h0, h1 in pb.head_blocks():
        kh = h1 - h0
        m = pb.masks(work, h0, h1, zt).view(kh, C, nb, np_)                 # M
        acc.msum[h0:h1, b0:b1] += m.sum(-1).sum(1)
        for t in range(pb.T):  # the L1 term sums M, the classifier pools g(M)
            g = mask_transform(m, *pb.transform_params(h0, h1, t)) if pb.transform else m
            prod = torch.mul(g, z4, out=work.second(m))
            acc.pooled[t, h0:h1, :, b0:b1] += prod.sum(-1)


def _forward_sums(pb: _Problem) -> "_ForwardSums":
    """Every column block's forward sums, added up."""
    return _run_groups(pb, lambda: _ForwardSums(pb), lambda w, acc, blk: _forward_block(pb, w, acc, blk),
                       _ForwardSums.add)


class _BackwardSums:
    def __init__(self, pb: _Problem, need_A: bool, need_a: bool):
        self.dA = torch.zeros(pb.K * pb.C, pb.C, dtype=pb.acc, device=pb.device) if need_A else None
        self.da = torch.zeros(pb.K * pb.C, dtype=pb.acc, device=pb.device) if need_a else None

    @staticmethod
    def add(total: "_BackwardSums", part: "_BackwardSums") -> "_BackwardSums":
        for name in ("dA", "da"):
            if getattr(total, name) is not None:
                getattr(total, name).add_(getattr(part, name))
        return total


def _backward_block(pb: _Problem, work: _Workspace, acc: _BackwardSums, blk: _Block,
                    coef: torch.Tensor, gs: torch.Tensor, gz: torch.Tensor | None) -> None:
    C, nb, np_, b0, b1 = pb.C, blk.nb, blk.np, blk.b0, blk.b1
    zt = pb.features(blk)
    z4 = zt.to(pb.acc).view(1, C, nb, np_)
    dz = None
    if gz is not None:  # the block of dL/dz: a view of gz inside one image, else a buffer
        dz = gz[b0, :, blk.p0:blk.p0 + np_] if nb == 1 else work.dz(pb, blk)
    if pb.kernels is not None and not pb.transform:
        # contiguous copies: rows HW apart alias in the caches, and the loops visit them per head
        zt = zt.contiguous()
        dzc = work.dz(pb, blk) if dz is not None else None
        _backward_block_compiled(pb, work, acc, blk, coef, gs, zt, dzc)
        if nb == 1 and dz is not None:
            dz.add_(dzc)
        elif dz is not None:
            gz[b0:b1].transpose(0, 1).add_(dzc.view(C, nb, np_))
        return
    for h0, h1 in pb.head_blocks():
        kh = h1 - h0
        m2 = pb.masks(work, h0, h1, zt)                                  # (kh*C, cols) = M
        m = m2.view(kh, C, nb, np_)
        if pb.transform:
            nk, bk = pb.transform_params(h0, h1)
            g, dg = mask_transform(m, nk, bk), (1.0 + bk) * tone_curve_grad(m, nk)
        else:
            g, dg = m, None
        y = work.second(m)
        ct = coef[h0:h1, :, b0:b1].unsqueeze(-1)                            # (kh, C, nb, 1) = gp / HW
        if dz is not None:  # the direct term: sum_k gp G / HW
            dz.view(C, nb, np_).add_(torch.mul(g, ct, out=y).sum(0))
        torch.mul(ct, z4, out=y)                                            # dG
        if dg is not None:
            y.mul_(dg)
        y.add_(gs[h0:h1, b0:b1].view(kh, 1, nb, 1))                         # dM
        m.addcmul_(m, m, value=-1.0).mul_(y)                                # dP = dM M (1 - M), in m
        dp = work.low(m2)
        r0, r1 = h0 * C, h1 * C
        if acc.dA is not None:
            _addmm_acc(acc.dA[r0:r1], dp, zt.t())
        if acc.da is not None:
            acc.da[r0:r1] += m2.sum(1)
        if dz is not None:
            _addmm_acc(dz, pb.A[h0:h1].reshape(-1, C).t(), dp)
    if dz is not None and nb > 1:
        gz[b0:b1].transpose(0, 1).add_(dz.view(C, nb, np_))


def _backward_block_compiled(pb: _Problem, work: _Workspace, acc: _BackwardSums, blk: _Block,
                             coef: torch.Tensor, gs: torch.Tensor, zt: torch.Tensor,
                             dz: torch.Tensor | None) -> None:
    """The same as the torch-op loop of _backward_block, the elementwise work in one compiled pass."""
    C, b0, b1 = pb.C, blk.b0, blk.b1
    da = acc.da if acc.da is not None else work.scratch_rows(pb)
    for h0, h1 in pb.head_blocks():
        kh, r0, r1 = h1 - h0, h0 * C, h1 * C
        p = pb.logits(work, h0, h1, zt)
        ct = coef[h0:h1, :, b0:b1].contiguous()                            # (kh, C, nb)
        gt = gs[h0:h1, b0:b1].contiguous()                                 # (kh, nb)
        pb.kernels.heads_backward(p.data_ptr(), kh * C, blk.nb, blk.np, C, zt.data_ptr(), zt.stride(0),
                                  pb.a[h0:h1].data_ptr(), ct.data_ptr(), gt.data_ptr(),
                                  dz.data_ptr() if dz is not None else None,
                                  dz.stride(0) if dz is not None else 0, da[r0:r1].data_ptr())
        if acc.dA is not None:                                             # p now holds dP
            acc.dA[r0:r1].addmm_(p, zt.t())
        if dz is not None:
            dz.addmm_(pb.A[h0:h1].reshape(-1, C).t(), p)


def _addmm_acc(out: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor) -> None:
    """out += m1 @ m2, accumulating in out's dtype."""
    if m1.dtype == out.dtype:
        out.addmm_(m1, m2)
    else:
        out.add_(torch.mm(m1, m2))


# ----------------------------------------------------------------------------------------------
# workers


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


def _pool(n: int) -> ThreadPoolExecutor:
    """n worker threads whose torch ops run single-threaded (the calling thread keeps its count)."""
    with _POOL_LOCK:
        if n not in _POOLS:
            caller = torch.get_num_threads()
            barrier = threading.Barrier(n)
            pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix=f"hpnet-heads{n}")
            for f in [pool.submit(_start_worker, barrier) for _ in range(n)]:
                f.result()
            torch.set_num_threads(caller)  # threads created later default to the caller's count
            _POOLS[n] = pool
        return _POOLS[n]


def _start_worker(barrier: threading.Barrier) -> None:
    torch.set_num_threads(1)
    barrier.wait()  # every worker thread exists (and is single-threaded) before the pool is used


def _reset_pool_in_child() -> None:
    _POOLS.clear()  # the parent's threads do not exist in a forked child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pool_in_child)


GROUPS = 32
USE_KERNELS = True  # the compiled per-tile loops where they apply (tests switch them off to compare)


class _OrderedTotal:
    """Adds the groups' sums in group order, whatever order they finish in: bit-identical results,
    and no more than a few groups' sums held at a time."""

    def __init__(self, add):
        self.add, self.total, self.next, self.ready = add, None, 0, {}
        self.lock = threading.Lock()

    def put(self, g: int, sums) -> None:
        with self.lock:
            self.ready[g] = sums
            while self.next in self.ready:
                part = self.ready.pop(self.next)
                self.total = part if self.total is None else self.add(self.total, part)
                self.next += 1


def _run_groups(pb: _Problem, make_sums, body, add):
    """``body(workspace, sums, block)`` over every column block; returns the groups' sums added up
    by ``add(total, sums)`` in group order.

    The blocks are cut into at most GROUPS runs of consecutive blocks, each summed into its own
    accumulators in block order, and workers take whole groups as they come free. So the result is
    bit-identical whatever the thread count or the timing (resumed training repeats exactly),
    while a worker that the OS deschedules simply takes fewer groups.
    """
    blocks = pb.blocks()
    n = min(GROUPS, len(blocks))
    groups = [blocks[len(blocks) * g // n:len(blocks) * (g + 1) // n] for g in range(n)]
    total = _OrderedTotal(add)

    def run_group(work: _Workspace, g: int) -> None:
        acc = make_sums()
        for blk in groups[g]:
            body(work, acc, blk)
        total.put(g, acc)

    if not blocks:  # an empty batch
        return make_sums()
    if pb.device.type != "cpu":  # CUDA: in the calling thread, kernels queue asynchronously
        work = _Workspace(pb)
        for g in range(n):
            run_group(work, g)
        return total.total
    next_group, lock = iter(range(n)), threading.Lock()
    inference = torch.is_inference_mode_enabled()

    def worker() -> None:
        with torch.inference_mode(inference), torch.no_grad():
            work = _Workspace(pb)
            while True:
                with lock:
                    g = next(next_group, None)
                if g is None:
                    return
                run_group(work, g)

    threads = min(pb.threads, n)
    for f in [_pool(threads).submit(worker) for _ in range(threads)]:
        f.result()
    return total.total


# ----------------------------------------------------------------------------------------------
# the autograd function


def _compute_dtype(z: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(z.device.type):
        return torch.get_autocast_dtype(z.device.type)
    return z.dtype


class _FusedHeads(torch.autograd.Function):

    @staticmethod
    def forward(ctx, z, A, a, n, beta, transform, setup):
        B, C, HW = z.shape
        cdt = _compute_dtype(z)
        with torch.autocast(z.device.type, enabled=False):
            pb = _Problem(z, A, a, n, beta, transform, cdt, setup)
            sums = _forward_sums(pb)
            pooled, msum = sums.pooled, sums.msum
        ctx.save_for_backward(z, A, a, n, beta)
        ctx.setup = (transform, setup, cdt)
        return pooled[0].div_(HW).permute(2, 0, 1), msum.t()    # (B, K, C), (B, K)

    @staticmethod
    def backward(ctx, grad_pooled, grad_msum):
        z, A, a, n, beta = ctx.saved_tensors
        transform, setup, cdt = ctx.setup
        need_z, need_A, need_a = ctx.needs_input_grad[:3]
        pb = _Problem(z, A, a, n, beta, transform, cdt, setup)
        B, K, C, HW = pb.B, pb.K, pb.C, pb.HW
        coef = (grad_pooled.to(pb.acc) / HW).permute(1, 2, 0).contiguous()    # (K, C, B)
        gs = grad_msum.to(pb.acc).t().contiguous()                               # (K, B)
        gz = torch.zeros(B, C, HW, dtype=pb.acc, device=pb.device) if need_z else None
        sums = _run_groups(pb, lambda: _BackwardSums(pb, need_A, need_a),
                           lambda w, acc, blk: _backward_block(pb, w, acc, blk, coef, gs, gz), _BackwardSums.add)
        gz = gz.to(z.dtype) if need_z else None
        gA = sums.dA.view(K, C, C).to(A.dtype) if need_A else None
        ga = sums.da.view(K, C).to(a.dtype) if need_a else None
        return gz, gA, ga, None, None, None, None
