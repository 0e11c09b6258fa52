"""How the work of the fused mask heads (:mod:`hpnet.model.fused`) is cut into tiles and run.

A tile is a block of heads times a block of columns of the features seen as (C, B*HW): a part of
one image, or several whole images, so that each tile's reductions stay per image. Its size is
planned from a budget in bytes (:func:`tile_budget`, :func:`plan_tiles`) so that a tile's mask,
(k*C, cols), a few MB, is still in cache when the elementwise work reads back what the matrix
product wrote.

On CPU the column blocks are shared out to one worker thread per intra-op thread, each running
single-threaded ops on its own tiles and workspace: no fork/join per small op, and a worker that
the OS deschedules does not stall the other (it takes less of the work). Sums are formed in a
fixed order, so results are bit-identical run to run and for any thread count. On CUDA the tiles
run in the calling thread, big enough to keep kernel launches few.

What a block computes is the caller's: :func:`_run_groups` takes it as a function, and the caller
decides whether the compiled per-tile loops (hpnet.model._kernels) are used (``_Problem(kernels=)``).
"""
from __future__ import annotations

import functools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

# tile shape when the config says 0 ("auto"). CPU: a tile's mask of about five times the core's
# second-level cache, on about 512 columns. Measured for K = 40, C = 128, B = 32 at 64x64 (a
# training step of the heads alone, median of 5): on a 2-core AMD EPYC (512 KB L2 per core, 32 MB
# L3) 2.5 MB (8-20 heads on 512 columns) trains fastest, all 40 heads on 512 columns (10 MB) is 25%
# slower, on 128 columns 15% slower; on a 2-core Intel Xeon (2 MB L2 per core, AVX-512) 10 MB (all
# 40 heads on 512 columns) trains in 2.77 s, 20 heads in 2.92 s, 10 heads (2.5 MB) in 3.14 s.
# CUDA: big tiles, few kernel launches.
CPU_TILE_L2_MULTIPLE = 5
CPU_TILE_BYTES_FALLBACK = 5 << 19      # where the cache size cannot be read: the AMD EPYC's best
CPU_TILE_COLUMNS = 512
CUDA_TILE_BYTES = 512 << 20


def tile_budget(device: torch.device, chunk_mb: float = 0) -> int:
    """Bytes of one tile's mask: ``chunk_mb`` MB, or the device's default when it is 0."""
    if chunk_mb and chunk_mb > 0:
        return int(chunk_mb * (1 << 20))
    return CUDA_TILE_BYTES if device.type == "cuda" else cpu_tile_bytes()


def cpu_tile_bytes(sysfs: str = "/sys/devices/system/cpu/cpu0/cache") -> int:
    """The CPU tile budget: CPU_TILE_L2_MULTIPLE times the second-level cache of one core, as Linux
    reports it under ``sysfs``; CPU_TILE_BYTES_FALLBACK where it does not (other systems)."""
    l2 = _l2_bytes(sysfs)
    return CPU_TILE_L2_MULTIPLE * l2 if l2 else CPU_TILE_BYTES_FALLBACK


@functools.lru_cache(maxsize=None)
def _l2_bytes(sysfs: str) -> int:
    """Bytes of the level-2 data (or unified) cache in ``sysfs``'s index folders; 0 when unreadable."""
    try:
        for index in sorted(os.listdir(sysfs)):
            folder = os.path.join(sysfs, index)
            with open(os.path.join(folder, "level")) as f, open(os.path.join(folder, "type")) as t, \
                    open(os.path.join(folder, "size")) as z:
                level, kind, size = f.read().strip(), t.read().strip(), z.read().strip()
            if level == "2" and kind in ("Data", "Unified"):
                units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
                return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
    except (OSError, ValueError):
        return 0
    return 0


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
    a block of whole images is copied into (C, cols) by the worker that takes it. ``kernels``: the
    compiled per-tile loops (hpnet.model._kernels) where the caller uses them, else None. ``u``
    (B, U, HW): the features the masks read when they are not z (A is then (K, C, U)).
    """

    def __init__(self, z: torch.Tensor, A: torch.Tensor, a: torch.Tensor, n: torch.Tensor,
                 beta: torch.Tensor, transform: bool, cdt: torch.dtype, setup: tuple[int, int, int],
                 kernels=None, u: torch.Tensor | None = None):
        heads, cols, threads = setup
        if z.stride(-1) != 1:  # blocks are (C, cols) matrices with unit column stride
            z = z.contiguous()
        if u is not None and u.stride(-1) != 1:
            u = u.contiguous()
        self.u = u
        self.B, self.C, self.HW = z.shape
        self.U = u.shape[1] if u is not None else self.C
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
        self.kernels = kernels  # the compiled per-tile loops, or None: torch ops

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
        return self._columns(self.z, blk)

    def mask_input(self, blk: _Block, zt: torch.Tensor) -> torch.Tensor:
        """What the block's masks read, (U, cols): its features zt, or its block of u."""
        return zt if self.u is None else self._columns(self.u, blk)

    def _columns(self, t: torch.Tensor, blk: _Block) -> torch.Tensor:
        if blk.nb == 1:
            out = t[blk.b0, :, blk.p0:blk.p0 + blk.np]
        else:
            out = t[blk.b0:blk.b1].transpose(0, 1).reshape(t.shape[1], blk.cols)
        return out.to(self.cdt)

    def masks(self, work: "_Workspace", h0: int, h1: int, xt: torch.Tensor) -> torch.Tensor:
        """M = sigmoid(A x + a) of heads h0:h1 on what the masks read, xt (U, cols): (k*C, cols),
        acc dtype."""
        rows, width = (h1 - h0) * self.C, xt.shape[1]
        w, b = self.A[h0:h1].reshape(rows, self.U), self.a[h0:h1].reshape(rows, 1)
        m = work.buf[:rows * width].view(rows, width)
        if work.low_buf is None:
            torch.addmm(b, w, xt, out=m)
        else:
            p = work.low_buf[:rows * width].view(rows, width)
            torch.addmm(b, w, xt, out=p)
            m.copy_(p)
        return m.sigmoid_()

    def logits(self, work: "_Workspace", h0: int, h1: int, xt: torch.Tensor) -> torch.Tensor:
        """A x of heads h0:h1 on what the masks read, xt (U, cols) (no bias: the compiled loops add
        it), (k*C, cols) float32."""
        rows = (h1 - h0) * self.C
        p = work.buf[:rows * xt.shape[1]].view(rows, xt.shape[1])
        return torch.mm(self.A[h0:h1].reshape(rows, self.U), xt, out=p)

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
        self.grad_blocks: dict[str, torch.Tensor] = {}
        self.rows = None

    def scratch_rows(self, pb: _Problem) -> torch.Tensor:
        """Somewhere for the compiled loops to put row sums nobody asked for (K*C, zeroed)."""
        if self.rows is None:
            self.rows = torch.zeros(pb.K * pb.C, dtype=pb.acc, device=pb.device)
        return self.rows

    def dz(self, pb: _Problem, blk: _Block) -> torch.Tensor:
        """A zeroed (C, cols) buffer for the gradient of z over a block of several images."""
        return self._grad_block("z", pb.C, pb, blk)

    def du(self, pb: _Problem, blk: _Block) -> torch.Tensor:
        """A zeroed (U, cols) buffer for the gradient of u over a block of several images."""
        return self._grad_block("u", pb.U, pb, blk)

    def _grad_block(self, name: str, rows: int, pb: _Problem, blk: _Block) -> torch.Tensor:
        if name not in self.grad_blocks:
            self.grad_blocks[name] = torch.empty(rows * pb.cols, dtype=pb.acc, device=pb.device)
        return self.grad_blocks[name][:rows * blk.cols].view(rows, blk.cols).zero_()

    def second(self, like: torch.Tensor) -> torch.Tensor:
        return self.buf2[:like.numel()].view(like.shape)

    def low(self, m: torch.Tensor) -> torch.Tensor:
        """m in the matrix-product dtype (m itself when that is the accumulation dtype)."""
        if self.low_buf is None:
            return m
        return self.low_buf[:m.numel()].view(m.shape).copy_(m)


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


