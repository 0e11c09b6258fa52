"""The page's latency: one perturbation applied and measured on the demo's network, as `hpnet serve` does it;
and the score of a long trial log.

A network of the demo's shape (strided backbone 16, 32, 64, 64 at 64x64, the synthetic faces' 25
attributes; random weights, which cost the same as trained ones) with its plain-CNN baseline, the
features of ``images`` cached; then random perturbations of the family the trials draw from, each
timed through the JSON API (request parsing, heads-only pass, formula, JSON answer); the families
are every registered operation that applies (``Workbench.random_perturbation``).

The score (:func:`score_latency`): a log of random trials of the demo's two networks, 4 attributes
each (a person's integer predictions -3..3, a formula, a measured change), scored as ``hpnet
hitl-score`` and the page do it, with the peak traced memory of scoring the parsed trials.
"""
from __future__ import annotations

import json
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from ..data.base import ArrayDataset
from ..data.synthetic import ATTRIBUTES
from ..hitl import Network, Workbench
from ..hitl.app import create_app
from ..model import HPNet, ModelConfig
from ..predictability.human import LOG_VERSION, read_trials, score_trial_log, score_trials

DEMO_SHAPE = {"backbone": "strided", "widths": (16, 32, 64, 64), "image_size": 64}
QUICK_SHAPE = {"backbone": "strided", "widths": (4, 6, 8), "image_size": 16}


def apply_latency(images: int = 256, requests: int = 60, quick: bool = False, seed: int = 0) -> dict:
    """Median and 95th percentile (ms) of POST /api/apply over ``requests`` random perturbations."""
    shape = QUICK_SHAPE if quick else DEMO_SHAPE
    names = list(ATTRIBUTES)
    g = torch.Generator().manual_seed(seed)
    size = shape["image_size"]
    data = ArrayDataset(torch.randint(0, 256, (images, 3, size, size), dtype=torch.uint8, generator=g),
                        (torch.rand(images, len(names), generator=g) > 0.5).float(), names)
    start = time.perf_counter()
    nets = []
    for name, head in (("bench (attention)", "attention"), ("bench/plain (linear)", "linear")):
        torch.manual_seed(seed)
        model = HPNet(ModelConfig(names, backbone=shape["backbone"], widths=shape["widths"], head=head)).eval()
        nets.append(Network(name, model, data, data, images, images, 128))
    bench = Workbench(nets, data, "bench", seed=seed)
    setup_s = time.perf_counter() - start
    specs = [bench.random_perturbation(network).to_json() for network in bench.networks
             for _ in range(requests // 2)]
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        client = create_app(bench, port=8000, log=Path(tmp) / "trials.jsonl").test_client()
        for i, spec in enumerate(specs[:3] + specs):               # the first three warm up
            t = time.perf_counter()
            response = client.post("/api/apply", json=spec, base_url="http://127.0.0.1:8000")
            if response.status_code != 200:
                raise RuntimeError(f"/api/apply answered {response.status_code}: {response.json}")
            if i >= 3:
                times.append(time.perf_counter() - t)
    ms = 1e3 * np.asarray(times)
    return {"images": images, "requests": len(times), "attributes": len(names), "channels": shape["widths"][-1],
            "median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)), "max_ms": float(ms.max()),
            "setup_s": setup_s}



def score_latency(trials: int = 20000, n_boot: int = 1000, quick: bool = False, seed: int = 0) -> dict:
    """Seconds to score a log of ``trials`` random trials (``score_trial_log``: read, parse, bootstrap
    every predictor overall and per network), the share of parsing, and the peak traced memory (MB)
    of scoring the parsed trials (their arrays and the bootstrap's blocks; measured with fewer
    resamples, as the blocks do not grow with them)."""
    trials = 200 if quick else trials
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "trials.jsonl"
        write_trial_log(log, trials, seed)
        start = time.perf_counter()
        result = score_trial_log(log, n_boot=n_boot, seed=seed)
        score_s = time.perf_counter() - start
        start = time.perf_counter()
        parsed, _ = read_trials(log)
        parse_s = time.perf_counter() - start
        tracemalloc.start()
        score_trials(parsed, n_boot=min(n_boot, 100), seed=seed)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        size = log.stat().st_size
    return {"trials": result.trials, "pairs": result.pairs, "log_mb": size / 2 ** 20, "n_boot": n_boot,
            "score_s": score_s, "parse_s": parse_s, "score_peak_mb": peak / 2 ** 20}


def write_trial_log(path: Path, trials: int, seed: int = 0) -> None:
    """A log of ``trials`` random trials in the format of ``append_trial`` (two networks, 4 of the
    synthetic faces' attributes each)."""
    rng = np.random.default_rng(seed)
    networks = ("bench (attention)", "bench/plain (linear)")
    with open(path, "w") as f:
        for i in range(trials):
            shown = sorted(rng.choice(len(ATTRIBUTES), 4, replace=False).tolist())
            direction = rng.integers(-1, 2, 4)
            size = np.where(direction == 0, 0, rng.integers(1, 4, 4))
            measured = rng.normal(size=4)
            params = {"operation": "scale", "channels": sorted(rng.choice(64, 3, replace=False).tolist()),
                      "alpha": round(float(rng.uniform()), 3)}
            trial = {"version": LOG_VERSION, "trial": f"{i:016x}", "time": "2026-01-01T12:00:00+00:00",
                     "network": networks[i % 2], "blind": False, "source": "random", "operation": "scale",
                     "params": params, "perturbation": params, "description": "scale 3 channels",
                     "attributes": [ATTRIBUTES[k] for k in shown], "person": (direction * size).tolist(),
                     "direction": direction.tolist(), "size": size.tolist(), "confidence": round(float(rng.uniform()), 2),
                     "formula": (measured + rng.normal(size=4)).tolist(), "measured": measured.tolist(),
                     "measured_abs": np.abs(measured).tolist(), "accuracy_change": (0.01 * rng.normal(size=4)).tolist(),
                     "seconds": round(float(rng.uniform(2, 30)), 2)}
            f.write(json.dumps(trial, allow_nan=False, separators=(",", ":")) + "\n")
