"""CUDA check of the fused attention heads: ``python bench/cuda_check.py [--no-bench]``.

1. Fused vs naive heads on CUDA in float32 (TF32 off): pooled features, mask sums and the
   gradients of z, A and a, for tiny configs (several tile shapes, with and without the mask
   transformation) and the paper's config (K = 40, C = 128, 64x64, B = 4); then the whole
   network's logits, L1 term and every parameter's gradient, with the paper's heads, the channel
   heads (on CUDA: blocks of torch ops, differentiated by autograd) and the context heads.
   Relative error = max |fused - naive| / max |naive|, required <= 1e-4.
2. Mixed precision: ``hpnet.train.fit`` for a few steps of the paper's config with amp (bfloat16
   where supported, else float16 with GradScaler), then float16 + GradScaler explicitly, through
   the fused heads: losses finite, output dtypes float32.
3. ``hpnet.bench`` on CUDA (skip with --no-bench).

Prints one JSON object (last line) and exits 0 when everything passes, 1 otherwise. Without a
CUDA device it says so and exits 0. Runs in well under 3 minutes on an H100.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from hpnet.bench import BenchConfig, run as run_bench
from hpnet.data.base import ArrayDataset
from hpnet.model.fused import fused_heads
from hpnet.model import HPNet, ModelConfig
from hpnet.model.heads import _head_chunk
from hpnet.train import TrainConfig, fit

RTOL = 1e-4


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def heads_case(B, K, C, H, tiles, transform, device) -> dict:
    g = torch.Generator(device="cpu").manual_seed(B * 1000 + K)
    z = torch.randn(B, C, H, H, generator=g).to(device).requires_grad_()
    A = (torch.randn(K, C, C, generator=g) / C ** 0.5).to(device).requires_grad_()
    a = (0.5 * torch.randn(K, C, generator=g)).to(device).requires_grad_()
    n = (0.5 + 2.5 * torch.rand(K, generator=g) if transform else torch.ones(K)).to(device)
    beta = (0.6 * torch.rand(K, generator=g) if transform else torch.zeros(K)).to(device)
    upstream = {}
    results = []
    for impl in ("naive", "fused"):
        if impl == "naive":
            p, s = _head_chunk(z.reshape(B, C, -1), A, a, n, beta, transform)
            upstream["p"] = torch.randn(p.shape, generator=g).to(device)
            upstream["s"] = torch.randn(s.shape, generator=g).to(device)
        else:
            p, s = fused_heads(z, A, a, n, beta, transform, tiles=tiles)
        grads = torch.autograd.grad((p * upstream["p"]).sum() + (s * upstream["s"]).sum(), (z, A, a))
        results.append([p, s, *grads])
    names = ("pooled", "mask_sum", "grad_z", "grad_A", "grad_a")
    errors = {k: rel(f, r) for k, f, r in zip(names, results[1], results[0])}
    return {"case": f"B{B} K{K} C{C} {H}x{H} tiles={tiles} transform={transform}", "errors": errors,
            "ok": max(errors.values()) <= RTOL}


def model_case(backbone, transform, device, head="attention") -> dict:
    torch.manual_seed(0)
    names = [f"a{i}" for i in range(5)]
    fused = HPNet(ModelConfig(names, backbone=backbone, widths=(8, 16, 16, 16), head=head)).to(device)
    naive = HPNet(ModelConfig(names, backbone=backbone, widths=(8, 16, 16, 16), head=head,
                              head_impl="naive")).to(device)
    naive.load_state_dict(fused.state_dict())
    if transform:
        for m in (fused, naive):
            m.set_transform(torch.tensor([1.0, 2.0, 0.7, 3.0, 1.5]), torch.tensor([0.0, 0.2, 0.5, 0.1, 0.3]))
    x = torch.rand(4, 3, 32, 32, device=device)
    y = (torch.rand(4, 5, device=device) > 0.5).float()
    res = []
    for m in (naive, fused):
        xi = x.clone().requires_grad_()
        out = m.train()(xi)
        loss = F.binary_cross_entropy_with_logits(out.logits, y) + 0.3 * out.mask_l1
        grads = torch.autograd.grad(loss, list(m.parameters()) + [xi])
        res.append([out.logits, out.mask_l1, *grads])
    errors = [rel(f, r) for f, r in zip(res[1], res[0])]
    return {"case": f"model {backbone} {head} heads transform={transform}", "max_error": max(errors),
            "logits_error": errors[0], "l1_error": errors[1], "ok": max(errors) <= RTOL}


def amp_training(device) -> dict:
    cfg = BenchConfig()
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (96, 3, 64, 64), dtype=torch.uint8, generator=g)
    targets = (torch.rand(96, cfg.attributes, generator=g) > 0.5).float()
    data = ArrayDataset(images, targets, [f"attr{i}" for i in range(cfg.attributes)])
    torch.manual_seed(0)
    model = HPNet(cfg.model_config("fused"))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        record = fit(model, data, None, TrainConfig(epochs=2, batch_size=32, amp=True, device=str(device)),
                     tmp, progress=False)
    seconds = time.perf_counter() - t0
    losses = [h["loss"] for h in record["history"]]
    amp_dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"

    # float16 + GradScaler explicitly, through the fused heads
    model = HPNet(cfg.model_config("fused")).to(device).train()
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    scaler = torch.amp.GradScaler("cuda")
    x = images[:16].to(device).float() / 255
    y = targets[:16].to(device)
    fp16 = []
    for _ in range(3):
        with torch.autocast("cuda", dtype=torch.float16):
            out = model(x)
        loss = F.binary_cross_entropy_with_logits(out.logits.float(), y, reduction="sum") / 16 + 1e-5 * out.mask_l1
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        fp16.append(float(loss))
    ok = all(map(lambda v: v == v and abs(v) < 1e6, losses + fp16)) and out.logits.dtype == torch.float32
    return {"fit_amp_dtype": amp_dtype, "fit_losses": losses, "fit_seconds": seconds,
            "fit_images_per_s": record["history"][-1]["images_per_s"], "fp16_gradscaler_losses": fp16,
            "logits_dtype": str(out.logits.dtype), "ok": ok}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--no-bench", action="store_true")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check (run this on a machine with a GPU)", file=sys.stderr)
        print(json.dumps({"cuda": False, "ok": True, "message": "no CUDA device; nothing checked"}))
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device("cuda")
    t0 = time.perf_counter()
    out = {"cuda": True, "device_name": torch.cuda.get_device_name(device), "torch": torch.__version__}
    heads = [heads_case(3, 5, 6, 4, (2, 4), tr, device) for tr in (False, True)]
    heads += [heads_case(4, 7, 8, 5, (4, 50), tr, device) for tr in (False, True)]
    heads += [heads_case(4, 40, 128, 64, None, tr, device) for tr in (False, True)]      # paper config
    heads += [heads_case(4, 40, 128, 64, (7, 1024), False, device)]
    out["heads"] = heads
    out["models"] = [model_case(bb, tr, device, head) for head in ("attention", "channel", "context")
                     for bb in ("paper", "strided") for tr in (False, True)]
    torch.backends.cuda.matmul.allow_tf32 = True  # the trainer's normal setting from here on
    torch.backends.cudnn.allow_tf32 = True
    out["amp"] = amp_training(device)
    if not args.no_bench:
        torch.cuda.empty_cache()
        out["bench"] = run_bench(BenchConfig(), device, quick=False)
    out["ok"] = all(c["ok"] for c in heads + out["models"]) and out["amp"]["ok"]
    out["seconds"] = time.perf_counter() - t0
    for c in heads + out["models"]:
        print(("ok   " if c["ok"] else "FAIL ") + c["case"], file=sys.stderr)
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
