"""Timings of the benchmark: the log clock, the matrix-multiply rate, best-of-repeats wall times
with their CPU time, and the time to draw a batch of data."""
from __future__ import annotations

import resource
import sys
import time
from typing import TYPE_CHECKING

import torch

from ..core.stream import batches, to_input
from ..data.base import ArrayDataset
from ..model.tiles import _pool

if TYPE_CHECKING:
    from . import BenchConfig

_T0 = time.perf_counter()


def start_clock(t0: float) -> None:
    """Log times from ``t0`` on (the start of a run)."""
    global _T0
    _T0 = t0


def log(text: str = "") -> None:
    print(f"[{time.perf_counter() - _T0:6.1f}s] {text}", file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, quick: bool) -> float:
    """float32 matrix-multiply rate of this device: the best of a few 2n^3-FLOP products, on CPU
    also as one single-threaded product per thread at once (the way the fused heads use the cores;
    under load from other processes the multi-threaded product can fall well below it)."""
    n = 1024 if quick else (8192 if device.type == "cuda" else 2048)
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    reps = 10 if device.type == "cuda" else 1

    def product():
        for _ in range(reps):
            a @ b

    best = _best_seconds(product, device, 3 if quick else 5) / reps
    rate = 2 * n ** 3 / best / 1e9
    if device.type == "cpu" and torch.get_num_threads() > 1:
        rate = max(rate, _per_thread_gflops(a, b, torch.get_num_threads(), 3 if quick else 5))
    return rate


def _best_seconds(fn, device: torch.device, rounds: int) -> float:
    fn()
    sync(device)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def _per_thread_gflops(a: torch.Tensor, b: torch.Tensor, threads: int, rounds: int) -> float:
    pool = _pool(threads)

    def all_threads():
        for f in [pool.submit(torch.mm, a, b) for _ in range(threads)]:
            f.result()
    return threads * 2 * a.shape[0] ** 3 / _best_seconds(all_threads, a.device, rounds) / 1e9


class Timing:
    """Best wall time of a function over repeats, with the CPU time's user/system split.
    ``warm`` (default: ``fn``) is run once first: the same work on a small batch is enough to
    start thread pools and build kernels, and costs little for the slow reference."""

    def __init__(self, fn, device: torch.device, warm=None):
        self.fn, self.device, self.warm = fn, device, warm or fn
        self.best, self.user, self.system, self.runs = float("inf"), 0.0, 0.0, 0

    @property
    def cpu_seconds(self) -> float:
        """Mean CPU time (all threads, user + system) of one timed run."""
        return (self.user + self.system) / max(self.runs, 1)

    def run(self) -> None:
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        self.fn()
        sync(self.device)
        elapsed, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        self.best = min(self.best, elapsed)
        self.user += r1.ru_utime - r0.ru_utime
        self.system += r1.ru_stime - r0.ru_stime
        self.runs += 1

    @property
    def system_fraction(self) -> float:
        return self.system / max(self.user + self.system, 1e-9)


def alternate(timings: list[Timing], repeat: int) -> None:
    """One warm-up each, then the functions in turn, ``repeat`` rounds (fair under varying load)."""
    for t in timings:
        t.warm()
        sync(t.device)
    for _ in range(repeat):
        for t in timings:
            t.run()


def data_seconds_per_batch(cfg: BenchConfig, size: int, device: torch.device, batches_to_draw: int = 20) -> float:
    """Time to draw one shuffled batch from an in-memory uint8 data set and put it on the device."""
    n = size * batches_to_draw
    data = ArrayDataset(torch.randint(0, 256, (n, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8),
                        torch.zeros(n, cfg.attributes), [f"attr{i}" for i in range(cfg.attributes)])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    for images, targets in batches(data, size, order):
        x, y = to_input(images, device), targets.to(device)
    sync(device)
    return (time.perf_counter() - t0) / batches_to_draw
