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
- every head family against the paper's fused heads (context masks: the same fused tiles;
  per-channel masks: their own compiled loops; linear: no masks), training and inference images/s
  measured alternately with the paper's (and the CPU time per image, which other processes' load
  sways less), and each against its own FLOP limit (2 x its MACs);
- the physically pruned network at 50% of the channels (``prune_physical``) against the full one;
- the resnet18 backbone (torchvision's widths and stem, the same heads) against the paper's network,
  training and inference images/s, alternately (:mod:`.backbones`);
- drawing a batch from an in-memory uint8 data set (``hpnet.core.stream.batches`` + ``to_input``)
  against a fused training step;
- the page of ``hpnet serve`` (:mod:`.hitl`): POST /api/apply on the demo's network with 256
  cached images, median and 95th percentile latency (CPU);
- the study server (:mod:`.study`): 50 simulated participants answering 16 items each over HTTP at
  once, commit latency (median, 95th percentile) and answers lost (must be 0);
- the score of a trial log of 20,000 trials (``hpnet hitl-score``, and the page after each commit):
  seconds, the share of parsing, the peak memory of scoring.

A table goes to stderr; the last line of stdout is one JSON object with every raw number and
train_speedup, infer_speedup, peak_memory_ratio (fused / naive), flop_limit_fraction (fused
inference / the FLOP limit), pruned50_infer_speedup and, under "heads", every family's
train_vs_attention, infer_vs_attention and train/infer_flop_limit_fraction. The matrix-multiply
rate is measured at the start and at the end, each the best of several products, and the best of
the two calibrates the FLOP limit (a rate measured while other processes load the machine would put the limit too low).

Here: the configuration and the run; in :mod:`.workload` the networks, inputs and steps measured,
in :mod:`.timing` and :mod:`.memory` the measurements, in :mod:`.__main__` the command line.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass

import torch

from ..model import HEADS, ModelConfig, count_macs, count_parameters
from .backbones import backbone_speeds
from .hitl import apply_latency, score_latency
from .memory import naive_batch_that_fits, step_peak_memory
from .study import commit_latency
from .timing import Timing, alternate, data_seconds_per_batch, log, matmul_gflops, start_clock
from .workload import batch, infer_fn, make_model, pruned_model, train_step_fn


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
    resnet_widths: tuple[int, ...] = (64, 128, 256, 512)

    def model_config(self, impl: str, head: str = "attention") -> ModelConfig:
        return ModelConfig([f"attr{i}" for i in range(self.attributes)], widths=self.widths,
                           dilations=self.dilations, head_impl=impl, head=head)


QUICK = BenchConfig(attributes=6, widths=(8, 16, 16, 16), image_size=16, train_batch=8,
                    infer_batch=8, memory_batch=8, repeat=1, resnet_widths=(4, 4, 8, 8))


def run(cfg: BenchConfig, device: torch.device, quick: bool) -> dict:
    """Every measurement in turn; one dict of raw numbers and ratios (the JSON of ``make bench``)."""
    start = time.perf_counter()
    start_clock(start)
    out = _describe(cfg, device)
    rate = matmul_gflops(device, quick)
    fused = make_model(cfg, "fused", device)
    flops = _flop_limit(cfg, fused, rate, out)
    x, y, xi = _fused_vs_naive(cfg, fused, device, out)
    _peak_memory(cfg, device, out)
    log("head families ...")                       # the other head families against the paper's
    out["heads"] = _head_families(cfg, fused, x, y, xi, device, out)
    _pruned(cfg, fused, xi, device, out)
    out["backbones"] = backbone_speeds(cfg, fused, x, y, xi, device)
    _data_loading(cfg, device, out)
    # the page of `hpnet serve`: one perturbation applied and measured (CPU, the demo's network)
    log("hpnet serve: apply-and-measure latency ...")
    out["serve_apply"] = apply_latency(quick=quick)
    log("hpnet study serve: 50 participants committing answers over HTTP ...")
    out["study_commit"] = commit_latency(quick=quick)
    log("hpnet serve: scoring a long trial log ...")
    out["serve_score"] = score_latency(quick=quick)
    # the FLOP limit from the best matrix-multiply rate of the run
    rates = [rate, matmul_gflops(device, quick)]
    out["matmul_gflops_samples"] = rates
    _set_flop_limits(out, max(rates), flops)
    out["load_average_at_end"] = _load_average()
    out["seconds"] = time.perf_counter() - start
    return out


def _describe(cfg: BenchConfig, device: torch.device) -> dict:
    """The machine and the configuration measured (logged as the table's title)."""
    out: dict = {"device": device.type, "device_name": device_name(device),
                 "threads": torch.get_num_threads(), "torch": torch.__version__,
                 "load_average_at_start": _load_average(),
                 "config": {"attributes": cfg.attributes, "widths": list(cfg.widths),
                            "dilations": list(cfg.dilations), "channels": cfg.widths[-1],
                            "image_size": cfg.image_size}}
    log(f"hpnet bench on {out['device_name']} ({out['threads']} threads), K={cfg.attributes}, "
        f"C={cfg.widths[-1]}, {cfg.image_size}x{cfg.image_size}")
    return out


def _flop_limit(cfg: BenchConfig, fused, rate: float, out: dict) -> int:
    """One image's FLOPs and the images/s limit they set with the first matrix-multiply rate."""
    flops = 2 * count_macs(fused, cfg.image_size)
    out.update(matmul_gflops=rate, flops_per_image=flops, flop_limit_images_per_s=rate * 1e9 / flops,
               train_flop_limit_images_per_s=rate * 1e9 / (3 * flops))
    log(f"matmul {rate:.0f} GFLOP/s; {flops / 1e9:.2f} GFLOP per image -> limit "
        f"{out['flop_limit_images_per_s']:.1f} img/s inference, {out['train_flop_limit_images_per_s']:.1f} training")
    return flops


def _naive_batches(cfg: BenchConfig, device: torch.device, out: dict) -> int:
    """The batch sizes timed (the naive heads' smaller where their masks do not fit); the naive training one."""
    naive_train_batch = naive_batch_that_fits(cfg, cfg.train_batch, device)
    out.update(train_batch=cfg.train_batch, naive_train_batch=naive_train_batch, infer_batch=cfg.infer_batch,
               naive_infer_batch=naive_batch_that_fits(cfg, cfg.infer_batch, device) if device.type == "cuda"
               else cfg.infer_batch)
    if naive_train_batch < cfg.train_batch:
        out["note"] = (f"the naive reference cannot train at B={cfg.train_batch} in this memory; "
                       f"it was timed at B={naive_train_batch}")
    return naive_train_batch


def _fused_vs_naive(cfg: BenchConfig, fused, device: torch.device, out: dict):
    """Training and inference of the naive and the fused heads in turn, and their ratios.
    Returns the training batch (x, y) and the inference images xi, reused by later steps."""
    naive = make_model(cfg, "naive", device)
    naive_train_batch = _naive_batches(cfg, device, out)
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
    _speedups(out)
    return x, y, xi


def _speedups(out: dict) -> None:
    out["train_speedup"] = out["fused"]["train_images_per_s"] / out["naive"]["train_images_per_s"]
    out["infer_speedup"] = out["fused"]["infer_images_per_s"] / out["naive"]["infer_images_per_s"]
    # CPU time per image: what the step costs the machine, less swayed by other processes' load
    out["train_cpu_speedup"] = out["naive"]["train_cpu_s_per_image"] / out["fused"]["train_cpu_s_per_image"]
    out["infer_cpu_speedup"] = out["naive"]["infer_cpu_s_per_image"] / out["fused"]["infer_cpu_s_per_image"]
    out["flop_limit_fraction"] = out["fused"]["infer_images_per_s"] / out["flop_limit_images_per_s"]
    out["train_flop_limit_fraction"] = out["fused"]["train_images_per_s"] / out["train_flop_limit_images_per_s"]


def _peak_memory(cfg: BenchConfig, device: torch.device, out: dict) -> None:
    """The peak memory of one training step of each (fresh processes on CPU) and their ratio."""
    mem_batch = min(cfg.memory_batch, naive_batch_that_fits(cfg, cfg.memory_batch, device))
    log(f"peak memory of a training step at B={mem_batch} ...")
    out["memory_batch"] = mem_batch
    for impl in ("fused", "naive"):
        out[impl]["train_step_peak_memory_mb"] = step_peak_memory(cfg, impl, mem_batch, device) / 2 ** 20
    out["peak_memory_ratio"] = out["fused"]["train_step_peak_memory_mb"] / out["naive"]["train_step_peak_memory_mb"]


def _pruned(cfg: BenchConfig, fused, xi, device: torch.device, out: dict) -> None:
    """Inference of the network physically pruned to 50% of the channels against the full one."""
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


def _data_loading(cfg: BenchConfig, device: torch.device, out: dict) -> None:
    """Drawing a batch from memory against a fused training step."""
    data_s = data_seconds_per_batch(cfg, cfg.train_batch, device)
    out["data"] = {"batch_s": data_s, "train_step_s": out["fused"]["train_step_s"]}
    out["data_fraction"] = data_s / out["fused"]["train_step_s"]


def _head_families(cfg: BenchConfig, attention, x, y, xi, device: torch.device, out: dict) -> dict:
    """Every head family's training and inference images/s, each measured side by side with the
    paper's fused heads (whose own entry is the fused measurement above), and its MACs."""
    families = {}
    for head in HEADS.names():
        if head == "attention":
            model, f = attention, out["fused"]
            train_s, infer_s, ratios = f["train_step_s"], f["infer_batch_s"], (1.0, 1.0, 1.0, 1.0)
        else:
            model = make_model(cfg, "fused", device, head=head)
            train = [Timing(train_step_fn(attention, x, y), device), Timing(train_step_fn(model, x, y), device)]
            alternate(train, cfg.repeat)
            infer = [Timing(infer_fn(attention, xi), device), Timing(infer_fn(model, xi), device)]
            alternate(infer, cfg.repeat)
            train_s, infer_s = train[1].best, infer[1].best
            ratios = (train[0].best / train_s, infer[0].best / infer_s,
                      train[0].cpu_seconds / train[1].cpu_seconds, infer[0].cpu_seconds / infer[1].cpu_seconds)
        families[head] = {"train_images_per_s": x.shape[0] / train_s, "infer_images_per_s": xi.shape[0] / infer_s,
                          "train_vs_attention": ratios[0], "infer_vs_attention": ratios[1],
                          "train_cpu_vs_attention": ratios[2], "infer_cpu_vs_attention": ratios[3],
                          "macs": count_macs(model, cfg.image_size), "params": count_parameters(model)}
        log(f"  {head}: train {ratios[0]:.2f}x, inference {ratios[1]:.2f}x the paper's heads")
        del model
    return families


def _set_flop_limits(out: dict, rate: float, flops: int) -> None:
    """The FLOP limits of the paper's network and of every head family's (2 x its MACs per image
    for inference, 3 times that for training) at ``rate`` GFLOP/s, and the fractions reached."""
    out.update(matmul_gflops=rate, flop_limit_images_per_s=rate * 1e9 / flops,
               train_flop_limit_images_per_s=rate * 1e9 / (3 * flops))
    out["flop_limit_fraction"] = out["fused"]["infer_images_per_s"] / out["flop_limit_images_per_s"]
    out["train_flop_limit_fraction"] = out["fused"]["train_images_per_s"] / out["train_flop_limit_images_per_s"]
    for h in out.get("heads", {}).values():
        limit = rate * 1e9 / (2 * h["macs"])
        h.update(infer_flop_limit_images_per_s=limit, train_flop_limit_images_per_s=limit / 3,
                 infer_flop_limit_fraction=h["infer_images_per_s"] / limit,
                 train_flop_limit_fraction=h["train_images_per_s"] / (limit / 3))


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
