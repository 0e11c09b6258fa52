"""Fused mask heads (the paper's and the context heads): pooled features and mask sums without the
(B, K, C, H, W) mask tensor.

For head k, image b, channel c and position p (HW positions per image):

    P = A_k z_b + a_k,   M = sigmoid(P),   G = g(M; n_k, beta_k)
    pooled[b, k, c] = sum_p G[c, p] z[c, p] / HW        msum[b, k] = sum_{c, p} M[c, p]

The work is cut into tiles: a block of heads times a block of columns of the features seen as
(C, B*HW) (a part of one image, or several whole images), planned and run on worker threads by
:mod:`hpnet.model.tiles`. A tile's mask, (k*C, cols), is a few MB: one matrix product writes it,
and the elementwise work and reductions read it back while it is still in cache; it is never
kept. Forward saves only its inputs; backward recomputes each tile and applies the hand-derived
gradients (gp = dL/dpooled, gs = dL/dmsum):

    dG = gp[b, k, c] z[c, p] / HW      dM = dG g'(M) + gs[b, k]      dP = dM M (1 - M)
    dA_k = sum_{b, p} dP z^T           da_k = sum_{b, p} dP
    dz = sum_k A_k^T dP + sum_k gp[b, k, c] G / HW

so a training step costs four matrix products per tile (one forward, three backward) and holds
no temporary larger than a tile: memory does not grow with K, and the allocator never sees the
huge, short-lived blocks that glibc maps and unmaps (page faults at 100% system time).

The masks may read other features than the ones they weight (the ``context`` heads: P = A_k u_b +
a_k with u (B, U, HW), A_k (C, U)); then dA_k = sum dP u^T and the A_k^T dP term goes to du
instead of dz.

On CPU, for float32, the elementwise work of a tile (sigmoid, the mask transformation, sums; in
backward without a transformation also dP and the direct term) is one pass of a small compiled
loop (hpnet.model._kernels) instead of a dozen torch ops; the matrix products stay in MKL, and
torch ops take over where the loops do not apply or cannot be built (or with ``USE_KERNELS``
False). Under autocast the matrix products run in the autocast dtype; the elementwise work and
all sums in float32.
"""
from __future__ import annotations

import torch

from ..core.tone import mask_transform, tone_curve_grad
from . import _kernels
from .tiles import CPU_TILE_COLUMNS, _Block, _Problem, _run_groups, _Workspace, plan_tiles, tile_budget

USE_KERNELS = True  # the compiled per-tile loops where they apply (tests switch them off to compare)


@torch.compiler.disable  # opaque to torch.compile: it runs its own worker threads
def fused_heads(z: torch.Tensor, mask_weight: torch.Tensor, mask_bias: torch.Tensor,
                transform_n: torch.Tensor, transform_beta: torch.Tensor, transform: bool,
                tiles: tuple[int, int] | None = None, chunk_mb: float = 0, threads: int = 0,
                context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features (B, K, C) = mean_p g(M) z and mask sums (B, K) of features z (B, C, H, W).

    The masks read z (mask_weight (K, C, C)), or ``context`` (B, U, H, W) when given
    (mask_weight (K, C, U)). ``tiles`` = (heads, columns) per tile overrides the plan made from
    ``chunk_mb`` (0: auto). ``threads``: CPU worker threads (0: torch.get_num_threads()). Outputs
    are float32 (float64 for float64 features); gradients flow to z, context, mask_weight and
    mask_bias.
    """
    B, C = z.shape[:2]
    K = mask_weight.shape[0]
    if B == 0:  # nothing to tile
        dtype = _output_dtype(z)
        return z.new_zeros(0, K, C, dtype=dtype), z.new_zeros(0, K, dtype=dtype)
    zf = z.reshape(B, C, -1)
    return _FusedHeads.apply(zf, mask_weight, mask_bias, transform_n, transform_beta, bool(transform),
                             _setup(zf, K, tiles, chunk_mb, threads), _context(zf, context, mask_weight))


@torch.compiler.disable  # opaque to torch.compile: it runs its own worker threads
def fused_pooled_many(z: torch.Tensor, mask_weight: torch.Tensor, mask_bias: torch.Tensor,
                      transform_n: torch.Tensor, transform_beta: torch.Tensor,
                      tiles: tuple[int, int] | None = None, chunk_mb: float = 0, threads: int = 0,
                      context: torch.Tensor | None = None) -> torch.Tensor:
    """Pooled features (T, B, K, C) under T mask transformations at once, for inference.

    ``transform_n`` and ``transform_beta`` are (T, K): row t is one transformation of every head.
    Each tile's masks are formed once and every transformation pools them, so T transformations
    cost far less than T calls of :func:`fused_heads` (the robustness sweep). ``context``: as
    for :func:`fused_heads`. No gradients.
    """
    B, C = z.shape[:2]
    K = mask_weight.shape[0]
    n, beta = transform_n.reshape(-1, K), transform_beta.reshape(-1, K)
    if n.shape != beta.shape:
        raise ValueError(f"transform_n {tuple(n.shape)} and transform_beta {tuple(beta.shape)} differ")
    if B == 0:
        return z.new_zeros(n.shape[0], 0, K, C, dtype=_output_dtype(z))
    zf = z.reshape(B, C, -1)
    uf = _context(zf, context, mask_weight)
    cdt = _compute_dtype(z)
    with torch.no_grad(), torch.autocast(z.device.type, enabled=False):
        pb = _problem(zf.detach(), mask_weight, mask_bias, n, beta, True, cdt,
                      _setup(zf, K, tiles, chunk_mb, threads), uf.detach() if uf is not None else None)
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


def _context(zf: torch.Tensor, context: torch.Tensor | None, A: torch.Tensor) -> torch.Tensor | None:
    """The context as (B, U, HW), checked against z (B, C, HW) and A (K, C, U); None stays None."""
    if context is None:
        return None
    B, C, HW = zf.shape
    uf = context.reshape(context.shape[0], context.shape[1], -1)
    if uf.shape[0] != B or uf.shape[2] != HW or A.shape[1:] != (C, uf.shape[1]):
        raise ValueError(f"context {tuple(context.shape)} does not fit features {tuple(zf.shape)} "
                         f"and mask weights {tuple(A.shape)}")
    return uf


def _output_dtype(z: torch.Tensor) -> torch.dtype:
    return torch.float64 if z.dtype == torch.float64 else torch.float32


def _problem(z: torch.Tensor, A: torch.Tensor, a: torch.Tensor, n: torch.Tensor, beta: torch.Tensor,
             transform: bool, cdt: torch.dtype, setup: tuple[int, int, int],
             u: torch.Tensor | None = None) -> _Problem:
    """The tile walk of one call, with the compiled per-tile loops (hpnet.model._kernels) where
    they apply: float32 on CPU, unless USE_KERNELS is off (backward: no transformation)."""
    kernels = (_kernels.library() if z.device.type == "cpu" and cdt == torch.float32
               and z.dtype == torch.float32 and USE_KERNELS else None)
    return _Problem(z, A, a, n, beta, transform, cdt, setup, kernels, u)


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
        xt = pb.mask_input(blk, zt)
        for h0, h1 in pb.head_blocks():
            kh = h1 - h0
            p = pb.logits(work, h0, h1, xt)
            sums = torch.empty(1 + pb.T, kh * C, nb)                        # M sums, then g_t(M) z sums
            T, tn, tb = (pb.T, pb.n[0, h0:].data_ptr(), pb.beta[0, h0:].data_ptr()) if pb.transform else (0, None, None)
            pb.kernels.heads_forward(p.data_ptr(), kh * C, nb, np_, C, zt.data_ptr(), zt.stride(0),
                                     pb.a[h0:h1].data_ptr(), T, tn, tb, pb.K, sums[0].data_ptr(),
                                     sums[1].data_ptr())
            acc.msum[h0:h1, b0:b1] += sums[0].view(kh, C, nb).sum(1)
            acc.pooled[:, h0:h1, :, b0:b1] += sums[1:].view(pb.T, kh, C, nb)
        return
    z4 = zt.to(pb.acc).view(1, C, nb, np_)
    xt = pb.mask_input(blk, zt)
    for h0, h1 in pb.head_blocks():
        kh = h1 - h0
        m = pb.masks(work, h0, h1, xt).view(kh, C, nb, np_)                 # M
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
        self.dA = torch.zeros(pb.K * pb.C, pb.U, dtype=pb.acc, device=pb.device) if need_A else None
        self.da = torch.zeros(pb.K * pb.C, dtype=pb.acc, device=pb.device) if need_a else None

    @staticmethod
    def add(total: "_BackwardSums", part: "_BackwardSums") -> "_BackwardSums":
        for name in ("dA", "da"):
            if getattr(total, name) is not None:
                getattr(total, name).add_(getattr(part, name))
        return total


def _backward_block(pb: _Problem, work: _Workspace, acc: _BackwardSums, blk: _Block,
                    coef: torch.Tensor, gs: torch.Tensor, gz: torch.Tensor | None,
                    gu: torch.Tensor | None) -> None:
    C, nb, np_, b0, b1 = pb.C, blk.nb, blk.np, blk.b0, blk.b1
    zt = pb.features(blk)
    z4 = zt.to(pb.acc).view(1, C, nb, np_)
    dz = du = None
    if gz is not None:  # the block of dL/dz: a view of gz inside one image, else a buffer
        dz = gz[b0, :, blk.p0:blk.p0 + np_] if nb == 1 else work.dz(pb, blk)
    if gu is not None:  # the same for dL/du
        du = gu[b0, :, blk.p0:blk.p0 + np_] if nb == 1 else work.du(pb, blk)
    if pb.kernels is not None and not pb.transform:
        # contiguous copies: rows HW apart alias in the caches, and the loops visit them per head
        zt = zt.contiguous()
        dzc = work.dz(pb, blk) if dz is not None else None
        _backward_block_compiled(pb, work, acc, blk, coef, gs, zt, pb.mask_input(blk, zt), dzc,
                                 du if pb.u is not None else dzc)
        if nb == 1 and dz is not None:
            dz.add_(dzc)
        elif dz is not None:
            gz[b0:b1].transpose(0, 1).add_(dzc.view(C, nb, np_))
    else:
        _backward_block_ops(pb, work, acc, blk, coef, gs, zt, z4, dz, du if pb.u is not None else dz)
        if dz is not None and nb > 1:
            gz[b0:b1].transpose(0, 1).add_(dz.view(C, nb, np_))
    if du is not None and nb > 1:
        gu[b0:b1].transpose(0, 1).add_(du.view(pb.U, nb, np_))


def _backward_block_ops(pb: _Problem, work: _Workspace, acc: _BackwardSums, blk: _Block,
                        coef: torch.Tensor, gs: torch.Tensor, zt: torch.Tensor, z4: torch.Tensor,
                        dz: torch.Tensor | None, dx: torch.Tensor | None) -> None:
    """One block's gradients by torch ops: the direct term into dz, A^T dP into dx (the gradient
    of what the masks read: dz itself, or du)."""
    C, nb, np_, b0, b1 = pb.C, blk.nb, blk.np, blk.b0, blk.b1
    xt = pb.mask_input(blk, zt)
    for h0, h1 in pb.head_blocks():
        kh = h1 - h0
        m2 = pb.masks(work, h0, h1, xt)                                  # (kh*C, cols) = M
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
            _addmm_acc(acc.dA[r0:r1], dp, xt.t())
        if acc.da is not None:
            acc.da[r0:r1] += m2.sum(1)
        if dx is not None:
            _addmm_acc(dx, pb.A[h0:h1].reshape(-1, pb.U).t(), dp)


def _backward_block_compiled(pb: _Problem, work: _Workspace, acc: _BackwardSums, blk: _Block,
                             coef: torch.Tensor, gs: torch.Tensor, zt: torch.Tensor, xt: torch.Tensor,
                             dz: torch.Tensor | None, dx: torch.Tensor | None) -> None:
    """The same as _backward_block_ops, the elementwise work in one compiled pass."""
    C, b0, b1 = pb.C, blk.b0, blk.b1
    da = acc.da if acc.da is not None else work.scratch_rows(pb)
    for h0, h1 in pb.head_blocks():
        kh, r0, r1 = h1 - h0, h0 * C, h1 * C
        p = pb.logits(work, h0, h1, xt)
        ct = coef[h0:h1, :, b0:b1].contiguous()                            # (kh, C, nb)
        gt = gs[h0:h1, b0:b1].contiguous()                                 # (kh, nb)
        pb.kernels.heads_backward(p.data_ptr(), kh * C, blk.nb, blk.np, C, zt.data_ptr(), zt.stride(0),
                                  pb.a[h0:h1].data_ptr(), ct.data_ptr(), gt.data_ptr(),
                                  dz.data_ptr() if dz is not None else None,
                                  dz.stride(0) if dz is not None else 0, da[r0:r1].data_ptr())
        if acc.dA is not None:                                             # p now holds dP
            acc.dA[r0:r1].addmm_(p, xt.t())
        if dx is not None:
            dx.addmm_(pb.A[h0:h1].reshape(-1, pb.U).t(), p)


def _addmm_acc(out: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor) -> None:
    """out += m1 @ m2, accumulating in out's dtype."""
    if m1.dtype == out.dtype:
        out.addmm_(m1, m2)
    else:
        out.add_(torch.mm(m1, m2))


# ----------------------------------------------------------------------------------------------
# the autograd function


def _compute_dtype(z: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(z.device.type):
        return torch.get_autocast_dtype(z.device.type)
    return z.dtype


class _FusedHeads(torch.autograd.Function):

    @staticmethod
    def forward(ctx, z, A, a, n, beta, transform, setup, u):
        B, C, HW = z.shape
        cdt = _compute_dtype(z)
        with torch.autocast(z.device.type, enabled=False):
            pb = _problem(z, A, a, n, beta, transform, cdt, setup, u)
            sums = _forward_sums(pb)
            pooled, msum = sums.pooled, sums.msum
        ctx.save_for_backward(z, A, a, n, beta, u)
        ctx.setup = (transform, setup, cdt)
        return pooled[0].div_(HW).permute(2, 0, 1), msum.t()    # (B, K, C), (B, K)

    @staticmethod
    def backward(ctx, grad_pooled, grad_msum):
        z, A, a, n, beta, u = ctx.saved_tensors
        transform, setup, cdt = ctx.setup
        need_z, need_A, need_a = ctx.needs_input_grad[:3]
        need_u = u is not None and ctx.needs_input_grad[7]
        pb = _problem(z, A, a, n, beta, transform, cdt, setup, u)
        B, K, C, HW = pb.B, pb.K, pb.C, pb.HW
        coef = (grad_pooled.to(pb.acc) / HW).permute(1, 2, 0).contiguous()    # (K, C, B)
        gs = grad_msum.to(pb.acc).t().contiguous()                               # (K, B)
        gz = torch.zeros(B, C, HW, dtype=pb.acc, device=pb.device) if need_z else None
        gu = torch.zeros(B, pb.U, HW, dtype=pb.acc, device=pb.device) if need_u else None
        sums = _run_groups(pb, lambda: _BackwardSums(pb, need_A, need_a),
                           lambda w, acc, blk: _backward_block(pb, w, acc, blk, coef, gs, gz, gu),
                           _BackwardSums.add)
        gz = gz.to(z.dtype) if need_z else None
        gu = gu.to(u.dtype) if need_u else None
        gA = sums.dA.view(K, C, pb.U).to(A.dtype) if need_A else None
        ga = sums.da.view(K, C).to(a.dtype) if need_a else None
        return gz, gA, ga, None, None, None, None, gu
