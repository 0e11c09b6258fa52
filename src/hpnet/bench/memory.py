"""Peak memory of one training step, and the largest batch the naive heads can train in memory."""
from __future__ import annotations

import multiprocessing as mp
import resource
from typing import TYPE_CHECKING

import torch

from .timing import sync
from .workload import batch, make_model, train_step_fn

if TYPE_CHECKING:
    from . import BenchConfig


def _memory_child(cfg: BenchConfig, impl: str, size: int, threads: int, queue) -> None:
    torch.set_num_threads(threads)
    device = torch.device("cpu")
    model = make_model(cfg, impl, device)
    x, y = batch(cfg, size, device)
    step = train_step_fn(model, x, y)
    before = _reset_peak_rss()
    step()
    queue.put(_peak_rss() - before)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> int:
    """Set the peak resident set to the current one (Linux: clear_refs 5); returns the current
    one. Where that is impossible, returns the peak so far (ru_maxrss, KiB on Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kb("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _peak_rss() -> int:
    try:
        return _status_kb("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def step_peak_memory(cfg: BenchConfig, impl: str, size: int, device: torch.device) -> int:
    """Bytes one training step needs above what was held before it."""
    if device.type == "cuda":
        model = make_model(cfg, impl, device)
        x, y = batch(cfg, size, device)
        step = train_step_fn(model, x, y)
        sync(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        sync(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        del model, x, y, step
        torch.cuda.empty_cache()
        return int(peak)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(cfg, impl, size, torch.get_num_threads(), queue))
    proc.start()
    try:
        value = queue.get(timeout=3600)
    finally:
        proc.join()
    return int(value)


def naive_batch_that_fits(cfg: BenchConfig, want: int, device: torch.device) -> int:
    """The largest batch <= want whose naive training step (about 3.5 copies of the
    (B, K, C, H, W) float32 mask tensor at once) fits in 80% of the free memory."""
    per_image = 3.5 * cfg.attributes * cfg.widths[-1] * cfg.image_size ** 2 * 4
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else _available_ram()
    fits = int(0.8 * free // per_image)
    return max(1, min(want, fits))


def _available_ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 40

