"""The command line of the benchmark: ``python -m hpnet.bench``; a table to stderr, JSON to stdout."""
from __future__ import annotations

import argparse
import json
import sys

import torch

from . import QUICK, BenchConfig, run
from . import __doc__ as BENCH_DOC
from .timing import log


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
        f"FLOP limit {r['flop_limit_images_per_s']:.1f} img/s inference ({r['matmul_gflops']:.0f} GFLOP/s, the best "
        f"of {', '.join(f'{v:.0f}' for v in r['matmul_gflops_samples'])}; "
        f"{r['flops_per_image'] / 1e9:.2f} GFLOP/image): fused reaches {100 * r['flop_limit_fraction']:.0f}%; "
        f"training {100 * r['train_flop_limit_fraction']:.0f}% of {r['train_flop_limit_images_per_s']:.1f} img/s",
        *[f"{name} heads: train {h['train_images_per_s']:.2f} img/s ({h['train_vs_attention']:.2f}x the paper's, "
          f"{100 * h['train_flop_limit_fraction']:.0f}% of its FLOP limit), inference {h['infer_images_per_s']:.2f} "
          f"img/s ({h['infer_vs_attention']:.2f}x, {100 * h['infer_flop_limit_fraction']:.0f}%), "
          f"{h['macs'] / 1e9:.2f} GMAC/image; CPU per image {h['train_cpu_vs_attention']:.2f}x / "
          f"{h['infer_cpu_vs_attention']:.2f}x less (train / inference)" for name, h in r["heads"].items()],
        *[f"backbone {name} (C={b['channels']}, {b['feature_side']}x{b['feature_side']} map): train "
          f"{b['train_images_per_s']:.2f} img/s vs the paper's {b['paper_train_images_per_s']:.2f} "
          f"({b['train_vs_paper']:.2f}x), inference {b['infer_images_per_s']:.2f} vs "
          f"{b['paper_infer_images_per_s']:.2f} img/s ({b['infer_vs_paper']:.2f}x), {b['macs'] / 1e9:.2f} GMAC/image"
          for name, b in r["backbones"].items()],
        f"pruned to {p['channels']} channels ({p['method']}): {p['infer_images_per_s']:.2f} vs "
        f"{p['full_infer_images_per_s']:.2f} img/s = {r['pruned50_infer_speedup']:.2f}x",
        f"hpnet serve: apply and measure one perturbation on {r['serve_apply']['images']} cached images "
        f"(K={r['serve_apply']['attributes']}, C={r['serve_apply']['channels']}): median "
        f"{r['serve_apply']['median_ms']:.1f} ms, p95 {r['serve_apply']['p95_ms']:.1f} ms "
        f"over {r['serve_apply']['requests']} requests",
        f"hpnet study serve: {r['study_commit']['participants']} participants at once, "
        f"{r['study_commit']['answers']} answers: commit median {r['study_commit']['median_ms']:.1f} ms, p95 "
        f"{r['study_commit']['p95_ms']:.1f} ms, {r['study_commit']['lost']} lost, "
        f"{len(r['study_commit']['errors'])} errors",
        f"hpnet serve: score of {r['serve_score']['trials']} trials ({r['serve_score']['log_mb']:.1f} MB, "
        f"{r['serve_score']['n_boot']} resamples) {r['serve_score']['score_s']:.2f} s, "
        f"{r['serve_score']['parse_s']:.2f} s of it parsing; scoring's peak traced memory "
        f"{r['serve_score']['score_peak_mb']:.0f} MB",
        f"data: {1e3 * r['data']['batch_s']:.2f} ms per batch = {100 * r['data_fraction']:.3f}% of a training step",
        f"total {r['seconds']:.0f} s; load average {r['load_average_at_start']} at start, "
        f"{r['load_average_at_end']} at end ({r['threads']} threads)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hpnet.bench", description=BENCH_DOC.split("\n")[0])
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
