"""The page's latency: one perturbation applied and measured on the demo's network, as `hpnet serve` does it.

A network of the demo's shape (strided backbone 16, 32, 64, 64 at 64x64, the synthetic faces' 25
attributes; random weights, which cost the same as trained ones) with its plain-CNN baseline, the
features of ``images`` cached; then random perturbations of the family the trials draw from, each
timed through the JSON API (request parsing, heads-only pass, formula, JSON answer); the families
are every registered operation that applies (``Workbench.random_perturbation``).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..data.base import ArrayDataset
from ..data.synthetic import ATTRIBUTES
from ..hitl import Network, Workbench
from ..hitl.app import create_app
from ..model import HPNet, ModelConfig

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

