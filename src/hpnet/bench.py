"""One benchmark, one process: the naive and the fused attention heads on the paper's config.

    python -m hpnet.bench [--device auto|cpu|cuda] [--quick] [--repeat N]     (also `make bench`)

Measured on the paper's network (K = 40 attributes, widths 32, 64, 64, 128 with dilations 1, 2, 3, 2,
C = 128, 64x64 images), in this order:
- the machine's matrix-multiply rate (a large float32 matmul) and the FLOPs of one image's
  inference (2 x ``count_macs``): their ratio is the FLOP-based limit on images/s;
- training (forward, backward, Adam step; the trainer's loss) and inference images/s of the naive
  heads (the whole (B, K, C, H, W) mask tensor) and the fused heads, measured alternately, best
  of ``--repeat`` after one warm-up, with the share of the step's CPU time spent in the kernel;
- the peak memory of one training step at B = 32 for each: on CPU the peak resident set of a
  fresh child process during the step above its resident set before it (the peak is reset
  first through /proc/self/clear_refs; ru_maxrss where that is impossible); on CUDA
  ``torch.cuda.max_memory_allocated`` above the memory held before the step;
- the physically pruned network at 50% of the channels (``prune_physical``) against the full one;
- drawing a batch from an in-memory uint8 data set (``hpnet.train.batches`` + ``to_input``)
  against a fused training step.

A table goes to stderr; the last line of stdout is one JSON object with every raw number and
train_speedup, infer_speedup, peak_memory_ratio (fused / naive), flop_limit_fraction (fused
inference / the FLOP limit) and pruned50_infer_speedup.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass

import torch

from .data.base import ArrayDataset
from .model import HPNet, ModelConfig, count_macs, count_parameters
from .train import batches, loss_fn, to_input


@dataclass
class BenchConfig:
    attributes: int = 40
    widths: tuple[int, ...] = (32, 64, 64, 128)
    dilations: tuple[int, ...] = (1, 2, 3, 2)
    image_size: int = 64
    train_batch: int = 32
    infer_batch: int = 32
    memory_batch: int = 32
    repeat: int = 2

    def model_config(self, impl: str) -> ModelConfig:
        return ModelConfig([f"attr{i}" for i in range(self.attributes)], widths=self.widths,
                           dilations=self.dilations, head_impl=impl)


QUICK = BenchConfig(attributes=6, widths=(8, 16, 16, 16), image_size=16, train_batch=8,
                    infer_batch=8, memory_batch=8, repeat=1)


_T0 = time.perf_counter()


def log(text: str = "") -> None:
    print(f"[{time.perf_counter() - _T0:6.1f}s] {text}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# pieces


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
    from .fused import _pool
    pool = _pool(threads)

    def all_threads():
        for f in [pool.submit(torch.mm, a, b) for _ in range(threads)]:
            f.result()
    return threads * 2 * a.shape[0] ** 3 / _best_seconds(all_threads, a.device, rounds) / 1e9


def make_model(cfg: BenchConfig, impl: str, device: torch.device, seed: int = 0) -> HPNet:
    torch.manual_seed(seed)
    return HPNet(cfg.model_config(impl)).to(device)


def batch(cfg: BenchConfig, size: int, device: torch.device, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (size, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8, generator=g)
    targets = (torch.rand(size, cfg.attributes, generator=g) > 0.5).float()
    return to_input(images, device), targets.to(device)


def train_step_fn(model: HPNet, x: torch.Tensor, y: torch.Tensor):
    """One optimisation step as the trainer takes it (loss of Eq. 10, Adam)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()

    def step():
        out = model(x)
        loss, _ = loss_fn(out.logits, y, out.mask_l1, 1e-5)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def infer_fn(model: HPNet, x: torch.Tensor):
    model.eval()

    def infer():
        with torch.inference_mode():
            model(x)
    return infer


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


# ----------------------------------------------------------------------------------------------
# peak memory of one training step


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


# ----------------------------------------------------------------------------------------------
# the benchmark


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


def pruned_model(model: HPNet) -> tuple[HPNet, str]:
    """The network with half its feature channels physically removed."""
    keep = list(range(0, model.config.channels, 2))
    try:
        from .ops.pruning import prune_physical
    except ImportError:  # fall back to a config of the same shape (same speed)
        config = ModelConfig.from_dict(model.config.to_dict())
        config.widths = config.widths[:-1] + (len(keep),)
        return HPNet(config).to(next(model.parameters()).device), "config"
    return prune_physical(model, keep), "prune_physical"


def run(cfg: BenchConfig, device: torch.device, quick: bool) -> dict:
    start = time.perf_counter()
    global _T0
    _T0 = start
    out: dict = {"device": device.type, "device_name": device_name(device),
                 "threads": torch.get_num_threads(), "torch": torch.__version__,
                 "load_average_at_start": _load_average(),
                 "config": {"attributes": cfg.attributes, "widths": list(cfg.widths),
                            "dilations": list(cfg.dilations), "channels": cfg.widths[-1],
                            "image_size": cfg.image_size}}
    log(f"hpnet bench on {out['device_name']} ({out['threads']} threads), K={cfg.attributes}, "
        f"C={cfg.widths[-1]}, {cfg.image_size}x{cfg.image_size}")

    rate = matmul_gflops(device, quick)
    fused = make_model(cfg, "fused", device)
    flops = 2 * count_macs(fused, cfg.image_size)
    out.update(matmul_gflops=rate, flops_per_image=flops, flop_limit_images_per_s=rate * 1e9 / flops,
               train_flop_limit_images_per_s=rate * 1e9 / (3 * flops))
    log(f"matmul {rate:.0f} GFLOP/s; {flops / 1e9:.2f} GFLOP per image -> limit "
        f"{out['flop_limit_images_per_s']:.1f} img/s inference, {out['train_flop_limit_images_per_s']:.1f} training")

    naive = make_model(cfg, "naive", device)
    naive_train_batch = naive_batch_that_fits(cfg, cfg.train_batch, device)
    out.update(train_batch=cfg.train_batch, naive_train_batch=naive_train_batch, infer_batch=cfg.infer_batch,
               naive_infer_batch=naive_batch_that_fits(cfg, cfg.infer_batch, device) if device.type == "cuda"
               else cfg.infer_batch)
    if naive_train_batch < cfg.train_batch:
        out["note"] = (f"the naive reference cannot train at B={cfg.train_batch} in this memory; "
                       f"it was timed at B={naive_train_batch}")

    # training and inference, naive and fused in turn
    x, y = batch(cfg, cfg.train_batch, device)
    xn, yn = x[:naive_train_batch], y[:naive_train_batch]
    warm = min(4, naive_train_batch)
    train = {"naive": Timing(train_step_fn(naive, xn, yn), device, train_step_fn(naive, x[:warm], y[:warm])),
             "fused": Timing(train_step_fn(fused, x, y), device, train_step_fn(fused, x[:warm], y[:warm]))}
    log("training steps ...")
    alternate(list(train.values()), cfg.repeat)
    xi, _ = batch(cfg, cfg.infer_batch, device, seed=2)
    infer = {"naive": Timing(infer_fn(naive, xi[:out["naive_infer_batch"]]), device, infer_fn(naive, xi[:warm])),
             "fused": Timing(infer_fn(fused, xi), device, infer_fn(fused, xi[:warm]))}
    log("inference ...")
    alternate(list(infer.values()), cfg.repeat)
    for impl, b_train, b_infer in (("naive", naive_train_batch, out["naive_infer_batch"]),
                                   ("fused", cfg.train_batch, cfg.infer_batch)):
        out[impl] = {"train_step_s": train[impl].best, "train_images_per_s": b_train / train[impl].best,
                     "train_system_time_fraction": train[impl].system_fraction,
                     "train_cpu_s_per_image": train[impl].cpu_seconds / b_train,
                     "infer_cpu_s_per_image": infer[impl].cpu_seconds / b_infer,
                     "infer_batch_s": infer[impl].best, "infer_images_per_s": b_infer / infer[impl].best}
    del naive, train, infer
    out["train_speedup"] = out["fused"]["train_images_per_s"] / out["naive"]["train_images_per_s"]
    out["infer_speedup"] = out["fused"]["infer_images_per_s"] / out["naive"]["infer_images_per_s"]
    # CPU time per image: what the step costs the machine, less swayed by other processes' load
    out["train_cpu_speedup"] = out["naive"]["train_cpu_s_per_image"] / out["fused"]["train_cpu_s_per_image"]
    out["infer_cpu_speedup"] = out["naive"]["infer_cpu_s_per_image"] / out["fused"]["infer_cpu_s_per_image"]
    out["flop_limit_fraction"] = out["fused"]["infer_images_per_s"] / out["flop_limit_images_per_s"]
    out["train_flop_limit_fraction"] = out["fused"]["train_images_per_s"] / out["train_flop_limit_images_per_s"]

    # peak memory of one training step (fresh processes on CPU)
    mem_batch = min(cfg.memory_batch, naive_batch_that_fits(cfg, cfg.memory_batch, device))
    log(f"peak memory of a training step at B={mem_batch} ...")
    out["memory_batch"] = mem_batch
    for impl in ("fused", "naive"):
        out[impl]["train_step_peak_memory_mb"] = step_peak_memory(cfg, impl, mem_batch, device) / 2 ** 20
    out["peak_memory_ratio"] = out["fused"]["train_step_peak_memory_mb"] / out["naive"]["train_step_peak_memory_mb"]

    # physical pruning at 50% of the channels
    log("pruned model ...")
    small, how = pruned_model(fused)
    full_t, small_t = Timing(infer_fn(fused, xi), device), Timing(infer_fn(small, xi), device)
    alternate([full_t, small_t], cfg.repeat)
    out["pruned50"] = {"method": how, "channels": small.config.channels,
                       "full_infer_images_per_s": cfg.infer_batch / full_t.best,
                       "infer_images_per_s": cfg.infer_batch / small_t.best,
                       "full_params": count_parameters(fused), "params": count_parameters(small),
                       "full_macs": count_macs(fused, cfg.image_size), "macs": count_macs(small, cfg.image_size)}
    out["pruned50_infer_speedup"] = full_t.best / small_t.best

    # data loading against a training step
    data_s = data_seconds_per_batch(cfg, cfg.train_batch, device)
    out["data"] = {"batch_s": data_s, "train_step_s": out["fused"]["train_step_s"]}
    out["data_fraction"] = data_s / out["fused"]["train_step_s"]
    out["load_average_at_end"] = _load_average()
    out["seconds"] = time.perf_counter() - start
    return out


def _load_average() -> float | None:
    """The 1-minute load average: other work on the machine skews every timing here."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def table(r: dict) -> str:
    n, f = r["naive"], r["fused"]
    rows = [
        ("", "naive", "fused", "fused/naive"),
        (f"train img/s (B={r['naive_train_batch']}/{r['train_batch']})", f"{n['train_images_per_s']:.2f}",
         f"{f['train_images_per_s']:.2f}", f"{r['train_speedup']:.2f}x"),
        (f"inference img/s (B={r['infer_batch']})", f"{n['infer_images_per_s']:.2f}",
         f"{f['infer_images_per_s']:.2f}", f"{r['infer_speedup']:.2f}x"),
        (f"train step peak MB (B={r['memory_batch']})", f"{n['train_step_peak_memory_mb']:.0f}",
         f"{f['train_step_peak_memory_mb']:.0f}", f"{r['peak_memory_ratio']:.3f}"),
        ("train step system time", f"{100 * n['train_system_time_fraction']:.0f}%",
         f"{100 * f['train_system_time_fraction']:.0f}%", ""),
        ("train CPU s per image", f"{n['train_cpu_s_per_image']:.2f}", f"{f['train_cpu_s_per_image']:.2f}",
         f"{r['train_cpu_speedup']:.2f}x less"),
        ("inference CPU s per image", f"{n['infer_cpu_s_per_image']:.3f}", f"{f['infer_cpu_s_per_image']:.3f}",
         f"{r['infer_cpu_speedup']:.2f}x less"),
    ]
    lines = [f"{a:<32}{b:>12}{c:>12}{d:>14}" for a, b, c, d in rows]
    p = r["pruned50"]
    lines += [
        f"FLOP limit {r['flop_limit_images_per_s']:.1f} img/s inference ({r['matmul_gflops']:.0f} GFLOP/s, "
        f"{r['flops_per_image'] / 1e9:.2f} GFLOP/image): fused reaches {100 * r['flop_limit_fraction']:.0f}%; "
        f"training {100 * r['train_flop_limit_fraction']:.0f}% of {r['train_flop_limit_images_per_s']:.1f} img/s",
        f"pruned to {p['channels']} channels ({p['method']}): {p['infer_images_per_s']:.2f} vs "
        f"{p['full_infer_images_per_s']:.2f} img/s = {r['pruned50_infer_speedup']:.2f}x",
        f"data: {1e3 * r['data']['batch_s']:.2f} ms per batch = {100 * r['data_fraction']:.3f}% of a training step",
        f"total {r['seconds']:.0f} s; load average {r['load_average_at_start']} at start, "
        f"{r['load_average_at_end']} at end ({r['threads']} threads)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hpnet.bench", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--quick", action="store_true", help="a tiny config (seconds; for tests)")
    p.add_argument("--repeat", type=int, default=None, help="timed rounds after the warm-up")
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    cfg = QUICK if args.quick else BenchConfig()
    if args.repeat:
        cfg.repeat = args.repeat
    result = run(cfg, device, args.quick)
    log(table(result))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
