"""Training and evaluation: the paper's loss, checkpoints every epoch, exact resume.

Loss (Eq. 10): the sum over attributes of the batch-mean binary cross-entropy, plus
``l1_lambda * ||M||_1`` (normalised as ``ModelConfig.l1_norm`` says). Defaults: Adam, lr 1e-3,
no weight decay, batch 64, cosine decay of the learning rate per step to 1% of its start; each
classifier's bias starts at its attribute's training log-odds.

A run folder holds ``run.json`` (data, model and training settings, history), ``checkpoint.safetensors``
(weights, optimizer state and progress, rewritten atomically after every epoch) and, once training
ends, ``model.safetensors`` + ``model.json``. Batches are drawn from a permutation seeded by
(seed, epoch), so a run resumed from its last checkpoint continues bit for bit on the same machine.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import distributed
from .data import DataSpec
from .data.base import ArrayDataset, MultiLabelDataset
from .errors import HPNetError
from .io import atomic_save_tensors, atomic_write_json, load_tensors, read_json, read_metadata
from .model import HPNet, ModelConfig

RUN_FILE = "run.json"
CHECKPOINT = "checkpoint.safetensors"


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    min_lr_fraction: float = 0.01
    l1_lambda: float = 1e-5
    seed: int = 0
    amp: bool = True          # mixed precision on CUDA (bfloat16 where supported, else float16)
    device: str = "auto"      # "auto": CUDA when present, else CPU
    num_workers: int = 2      # for sources that are not held in memory

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# ----------------------------------------------------------------------------------------------
# small pieces


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    return distributed.world()


def to_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> float in [0, 1] on the device (the conversion happens there)."""
    return images.to(device, non_blocking=True).float().div_(255.0)


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, mask_l1: torch.Tensor,
            l1_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 10: sum over attributes of batch-mean BCE, plus lambda * ||M||_1. Returns (loss, bce)."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="sum") / logits.shape[0]
    return bce + l1_lambda * mask_l1.float(), bce


def batches(data: MultiLabelDataset, batch_size: int, order: torch.Tensor | None = None,
            num_workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(uint8 images, targets) batches in ``order`` (default: data order)."""
    order = torch.arange(len(data)) if order is None else order
    if isinstance(data, ArrayDataset):
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            yield data.images[idx], data.targets[idx]
        return
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, sampler=order.tolist(),
                                         num_workers=num_workers)
    yield from loader


def learning_rate(cfg: TrainConfig, step: int, total: int) -> float:
    """Cosine from lr to lr * min_lr_fraction over ``total`` steps."""
    t = min(step / max(total, 1), 1.0)
    lo = cfg.lr * cfg.min_lr_fraction
    return lo + 0.5 * (cfg.lr - lo) * (1.0 + math.cos(math.pi * t))


# ----------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def predict(model: HPNet, data: MultiLabelDataset, batch_size: int = 256,
            device: torch.device | None = None, progress: bool = False,
            noise_std: float = 0.0, seed: int = 0) -> torch.Tensor:
    """Logits (N, K) of the whole data set; optional Gaussian input noise (on [0, 1] images)."""
    device = device or next(model.parameters()).device
    model.eval()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    for images, _ in tqdm(batches(data, batch_size), total=math.ceil(len(data) / batch_size),
                          desc="evaluating", disable=not progress, leave=False):
        x = to_input(images, device)
        if noise_std > 0:
            x = x + noise_std * torch.randn(x.shape, generator=gen).to(device)
        out.append(model(x).logits.float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.config.num_attributes)


def accuracy_table(logits: torch.Tensor, targets: torch.Tensor, names: list[str],
                   train_positive_rate: list[float]) -> dict:
    """Per-attribute accuracy and the majority-class baseline (majority taken from training labels)."""
    correct = ((logits > 0).float() == targets).float().mean(0)
    majority = torch.tensor([1.0 if p >= 0.5 else 0.0 for p in train_positive_rate])
    baseline = (targets == majority).float().mean(0)
    positives = targets.sum(0)
    rows = [{"name": n, "accuracy": float(a), "majority_baseline": float(b), "positives": int(p)}
            for n, a, b, p in zip(names, correct, baseline, positives)]
    return {"mean_accuracy": float(correct.mean()), "mean_majority_baseline": float(baseline.mean()),
            "images": int(targets.shape[0]), "per_attribute": rows}


def evaluate(model: HPNet, data: MultiLabelDataset, train_positive_rate: list[float],
             batch_size: int = 256, progress: bool = False) -> dict:
    logits = predict(model, data, batch_size, progress=progress)
    return accuracy_table(logits, data.targets, model.attribute_names, train_positive_rate)


# ----------------------------------------------------------------------------------------------
# checkpoints


def save_checkpoint(path: Path, model: HPNet, optimizer: torch.optim.Optimizer, state: dict) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, pstate in opt["state"].items():
        for name, value in pstate.items():
            tensors[f"optim.{idx}.{name}"] = torch.as_tensor(value)
    meta = {"state": json.dumps(state), "param_groups": json.dumps(opt["param_groups"])}
    atomic_save_tensors(tensors, path, metadata=meta)


def load_checkpoint(path: Path, model: HPNet, optimizer: torch.optim.Optimizer) -> dict:
    tensors = load_tensors(path)
    meta = read_metadata(path)
    model.load_tensors({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    opt_state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": opt_state, "param_groups": json.loads(meta["param_groups"])})
    return json.loads(meta["state"])


# ----------------------------------------------------------------------------------------------
# the loop


def train_positive_rate(data: MultiLabelDataset) -> list[float]:
    return [float(p) for p in data.targets.mean(0)] if len(data) else []


def fit(model: HPNet, train_data: MultiLabelDataset, valid_data: MultiLabelDataset | None,
        cfg: TrainConfig, run_dir: str | Path, data_spec: DataSpec | None = None,
        resume: bool = False, progress: bool = True) -> dict:
    """Train ``model`` into ``run_dir``; returns the run record (also written as run.json)."""
    run_dir = Path(run_dir)
    device = resolve_device(cfg.device)
    distributed.init_distributed(device)  # under torchrun; a no-op otherwise
    device = distributed.device_for_rank(device)
    rank, world_size = world()
    torch.manual_seed(cfg.seed)
    model.to(device)
    net = model
    if world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    amp_dtype = _amp_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    steps_per_epoch = math.ceil(len(train_data) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    record = {
        "model": model.config.to_dict(), "train": cfg.to_dict(),
        "data": data_spec.to_dict() if data_spec else None,
        "train_images": len(train_data), "valid_images": len(valid_data) if valid_data else 0,
        "train_positive_rate": train_positive_rate(train_data),
        "history": [], "status": "running", "epochs_done": 0, "step": 0,
    }
    if resume:
        record = load_checkpoint(run_dir / CHECKPOINT, model, optimizer)
    elif len(train_data):
        model.init_bias_from_prior(record["train_positive_rate"])
        if record["train"]["epochs"] != cfg.epochs:  # extending a run: keep its schedule length
            record["train"]["epochs"] = cfg.epochs
    if rank == 0:
        atomic_write_json(record, run_dir / RUN_FILE)

    for epoch in range(record["epochs_done"], cfg.epochs):
        order = torch.randperm(len(train_data), generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch))
        stats = _train_epoch(net, model, train_data, order, optimizer, scaler, amp_dtype, cfg, device,
                             record, total_steps, epoch, progress and rank == 0)
        if rank == 0 and valid_data is not None and len(valid_data):
            result = evaluate(model, valid_data, record["train_positive_rate"], cfg.batch_size * 4)
            stats["valid_mean_accuracy"] = result["mean_accuracy"]
        record["history"].append(stats)
        record["epochs_done"] = epoch + 1
        if rank == 0:
            save_checkpoint(run_dir / CHECKPOINT, model, optimizer, record)
            atomic_write_json(record, run_dir / RUN_FILE)
            if progress:
                _print_epoch(stats, cfg.epochs)

    record["status"] = "done"
    if rank == 0:
        record["masks"] = mask_statistics(model, valid_data if valid_data is not None and len(valid_data) else train_data)
        model.cpu().save(run_dir)
        atomic_write_json(record, run_dir / RUN_FILE)
    return record


def _train_epoch(net, model: HPNet, data, order, optimizer, scaler, amp_dtype, cfg: TrainConfig,
                 device, record: dict, total_steps: int, epoch: int, progress: bool) -> dict:
    rank, world_size = world()
    net.train()
    n_batches = math.ceil(len(order) / cfg.batch_size)
    bar = tqdm(total=len(order), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="img",
               disable=not progress, leave=False, dynamic_ncols=True)
    loss_sum, bce_sum, l1_sum, seen, start = 0.0, 0.0, 0.0, 0, time.perf_counter()
    for images, targets in batches(data, cfg.batch_size, order, cfg.num_workers):
        lr = learning_rate(cfg, record["step"], total_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        global_batch = images.shape[0]
        if global_batch < world_size:  # a last batch too small to give every rank an image
            continue
        images, targets = images[rank::world_size], targets[rank::world_size]  # this rank's share
        x, y = to_input(images, device), targets.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = net(x)
        loss, bce = loss_fn(out.logits, y, out.mask_l1, cfg.l1_lambda)
        # DDP averages gradients over ranks; weighting each rank by its share of the global batch
        # makes that the gradient of the global batch mean even when the shares differ by one
        share = images.shape[0] * world_size / global_batch
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss * share if world_size > 1 else loss).backward()
        scaler.step(optimizer)
        scaler.update()
        record["step"] += 1
        b = global_batch
        loss_sum, bce_sum, l1_sum, seen = (loss_sum + float(loss.detach()) * b, bce_sum + float(bce.detach()) * b,
                                           l1_sum + float(out.mask_l1.detach()) * b, seen + b)
        bar.update(b)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", lr=f"{lr:.1e}")
    bar.close()
    elapsed = time.perf_counter() - start
    return {"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "bce": bce_sum / max(seen, 1),
            "mask_l1": l1_sum / max(seen, 1), "images_per_s": seen / max(elapsed, 1e-9),
            "seconds": elapsed, "batches": n_batches}


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if not cfg.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _print_epoch(stats: dict, epochs: int) -> None:
    valid = f"  valid mean acc {stats['valid_mean_accuracy']:.4f}" if "valid_mean_accuracy" in stats else ""
    tqdm.write(f"epoch {stats['epoch']}/{epochs}  loss {stats['loss']:.4f}  bce {stats['bce']:.4f}  "
               f"{stats['images_per_s']:.0f} img/s{valid}")


@torch.no_grad()
def mask_statistics(model: HPNet, data: MultiLabelDataset, images: int = 64,
                    threshold: float = 0.1) -> dict | None:
    """Mean mask value and sparsity (fraction of mask values below ``threshold``) on a few images."""
    if not model.has_masks or len(data) == 0:
        return None
    model.eval()
    device = next(model.parameters()).device
    x = to_input(data[:images][0] if isinstance(data, ArrayDataset) else
                 torch.stack([data.image(i) for i in range(min(images, len(data)))]), device)
    m = model.masks(model.features(x))
    return {"mean": float(m.mean()), "sparsity": float((m < threshold).float().mean()),
            "threshold": threshold, "images": int(x.shape[0])}


# ----------------------------------------------------------------------------------------------
# run folders


def read_run(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HPNetError(f"{run_dir}: run folder not found")
    return read_json(run_dir / RUN_FILE)


def load_run_model(run_dir: str | Path) -> HPNet:
    """The trained model of a run (its final model, or its last checkpoint while it is unfinished)."""
    run_dir = Path(run_dir)
    record = read_run(run_dir)
    if (run_dir / "model.safetensors").is_file():
        return HPNet.load(run_dir)
    model = HPNet(ModelConfig.from_dict(record["model"]))
    tensors = load_tensors(run_dir / CHECKPOINT)
    model.load_tensors({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, run_dir / CHECKPOINT)
    return model.eval()
