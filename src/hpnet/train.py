"""Training: the paper's loss, checkpoints every epoch, exact resume.

Loss (Eq. 10): the sum over attributes of the batch-mean binary cross-entropy, plus
``l1_lambda * ||M||_1`` (normalised as ``ModelConfig.l1_norm`` says). Defaults: Adam, lr 1e-3,
no weight decay, batch 64, cosine decay of the learning rate per step to 1% of its start; each
classifier's bias starts at its attribute's training log-odds.

:func:`fit` writes the run folder (:mod:`hpnet.checkpoint`: run.json, a checkpoint after every
epoch, the model at the end). Batches are drawn from a permutation seeded by
(seed, epoch), so a run resumed from its last checkpoint continues bit for bit on the same machine.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from . import checks, distributed
from .checkpoint import CHECKPOINT, RUN_FILE, load_checkpoint, save_checkpoint
from .core.stream import batches, check_device, resolve_device, to_input
from .data import DataSpec
from .data.base import MultiLabelDataset
from .errors import HPNetError
from .evaluation import evaluate, mask_statistics
from .io import atomic_write_json
from .model import HPNet
from .model.weights import load_backbone_weights
from .progress import bar, write


@dataclass
class TrainConfig:
    epochs: int = field(default=10, metadata={
        "flag": "--epochs", "help": "epochs (default {default}; with --resume: raise the run's number)"})
    batch_size: int = field(default=64, metadata={"flag": "--batch-size"})
    lr: float = field(default=1e-3, metadata={"flag": "--lr"})
    weight_decay: float = field(default=0.0, metadata={"flag": "--weight-decay"})
    min_lr_fraction: float = 0.01
    l1_lambda: float = field(default=1e-5, metadata={
        "flag": "--l1-lambda", "help": "weight of the mask L1 term (Eq. 10)"})
    seed: int = field(default=0, metadata={"flag": "--seed"})
    amp: bool = field(default=True, metadata={  # bfloat16 where supported, else float16
        "flag": "--no-amp", "help": "no mixed precision on CUDA"})
    device: str = field(default="auto", metadata={"flag": "--device", "help": "auto, cpu, cuda, cuda:1, ..."})
    num_workers: int = field(default=2, metadata={
        "flag": "--workers", "help": "data loader workers for uncached sources"})
    max_loss_ratio: float = field(default=100.0, metadata={
        "flag": "--max-loss-ratio",
        "help": "stop (run marked failed) when a batch loss exceeds this times the run's first; 0: never. "
                "A loss or gradient that is not finite always stops training"})
    train_noise: float = field(default=0.0, metadata={
        "flag": "--train-noise",
        "help": "augmentation: Gaussian noise of this std on [0, 1] training images (default off)"})
    train_noise_p: float = field(default=0.5, metadata={
        "flag": "--train-noise-p", "help": "the share of training images that get it (default {default})"})
    backbone_weights: str | None = field(default=None, metadata={
        "flag": "--backbone-weights",
        "help": "start from these backbone weights: safetensors, or a PyTorch state dict read with weights_only "
                "(the ResNets: torchvision's or timm's names; fc.* ignored)"})

    def __post_init__(self) -> None:
        checks.count(self.epochs, "--epochs")
        checks.count(self.batch_size, "--batch-size")
        checks.number(self.lr, "--lr", 0, low_open=True)
        checks.number(self.weight_decay, "--weight-decay", 0)
        checks.number(self.min_lr_fraction, "min_lr_fraction", 0, 1, low_open=True)
        checks.number(self.l1_lambda, "--l1-lambda", 0)
        checks.seed(self.seed, "--seed")
        checks.flag(self.amp, "amp")
        check_device(self.device)
        checks.count(self.num_workers, "--workers", smallest=0)
        checks.number(self.max_loss_ratio, "--max-loss-ratio", 0)
        checks.number(self.train_noise, "--train-noise", 0)
        checks.number(self.train_noise_p, "--train-noise-p", 0, 1)
        checks.path(self.backbone_weights, "--backbone-weights", optional=True)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "training settings") -> "TrainConfig":
        """The settings stored as ``d`` (``source`` names the file in errors)."""
        return checks.from_dict(cls, d, source)


# ----------------------------------------------------------------------------------------------
# small pieces


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    return distributed.world()


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, mask_l1: torch.Tensor,
            l1_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 10: sum over attributes of batch-mean BCE, plus lambda * ||M||_1. Returns (loss, bce)."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="sum") / logits.shape[0]
    return bce + l1_lambda * mask_l1.float(), bce


def learning_rate(cfg: TrainConfig, step: int, total: int) -> float:
    """Cosine from lr to lr * min_lr_fraction over ``total`` steps."""
    t = min(step / max(total, 1), 1.0)
    lo = cfg.lr * cfg.min_lr_fraction
    return lo + 0.5 * (cfg.lr - lo) * (1.0 + math.cos(math.pi * t))


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
    if cfg.backbone_weights and not resume:
        load_backbone_weights(model, cfg.backbone_weights)
    model.to(device)
    net = model
    if world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    amp_dtype = _amp_dtype(cfg, device)
    loop = _Loop(net, optimizer, torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16), amp_dtype,
                 cfg, device, math.ceil(len(train_data) / cfg.batch_size) * cfg.epochs,
                 _smallest_batch(model, train_data, cfg, world_size))
    record = _start_record(model, optimizer, train_data, valid_data, cfg, run_dir, data_spec, resume)
    if rank == 0:
        atomic_write_json(record, run_dir / RUN_FILE)

    for epoch in range(record["epochs_done"], cfg.epochs):
        order = torch.randperm(len(train_data), generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch))
        step = record["step"]
        try:
            stats = loop.epoch(train_data, order, record, epoch, progress and rank == 0)
        except Diverged as why:
            record["step"] = step  # as the last checkpoint left it
            raise _failed(run_dir, record, str(why), rank) from None
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


def _start_record(model: HPNet, optimizer: torch.optim.Optimizer, train_data: MultiLabelDataset,
                  valid_data: MultiLabelDataset | None, cfg: TrainConfig, run_dir: Path,
                  data_spec: DataSpec | None, resume: bool) -> dict:
    """The run record to train on: a new one (the classifiers' biases set from the label prior), or
    the checkpoint's when resuming (model and optimizer restored, ``cfg.epochs`` the new target)."""
    record = {
        "model": model.config.to_dict(), "train": cfg.to_dict(),
        "data": data_spec.to_dict() if data_spec else None,
        "train_images": len(train_data), "valid_images": len(valid_data) if valid_data else 0,
        "train_positive_rate": train_positive_rate(train_data),
        "history": [], "status": "running", "epochs_done": 0, "step": 0,
    }
    if resume:
        record = load_checkpoint(run_dir / CHECKPOINT, model, optimizer)
        record["train"]["epochs"] = cfg.epochs  # an extension holds from now on, also after a kill
        record["status"] = "running"
        record.pop("failure", None)
    elif len(train_data):
        model.init_bias_from_prior(record["train_positive_rate"])
    return record


class Diverged(HPNetError):
    """Training stopped: a loss or gradient that is not finite, or a loss far above the run's first."""


def _failed(run_dir: Path, record: dict, why: str, rank: int) -> HPNetError:
    """Mark the run failed in run.json (its last checkpoint stays as it was); the error to raise."""
    done = record["epochs_done"]
    if done:
        kept = (f"its last checkpoint (epoch {done}) is kept: train into another --out with a lower --lr, or "
                f"retry from the checkpoint with `hpnet train --resume --out {run_dir}`")
    else:
        kept = "no epoch had finished: train again with a lower --lr"
    message = f"{run_dir}: training diverged at {why}; the run is marked failed, {kept}"
    record.update(status="failed", failure=message)
    if rank == 0:
        atomic_write_json(record, run_dir / RUN_FILE)
    return HPNetError(message)


@dataclass
class _Loop:
    """What every training step uses besides its batch, set up once by :func:`fit`."""

    net: torch.nn.Module                  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    cfg: TrainConfig
    device: torch.device
    total_steps: int
    smallest_batch: int = 1               # smaller (last) batches are skipped

    def epoch(self, data: MultiLabelDataset, order: torch.Tensor, record: dict, epoch: int,
              progress: bool) -> dict:
        """One pass over ``data`` in ``order``; advances ``record["step"]``; returns the epoch's stats."""
        cfg, optimizer = self.cfg, self.optimizer
        rank, world_size = world()
        self.net.train()
        n_batches = math.ceil(len(order) / cfg.batch_size)
        progress_bar = bar(total=len(order), desc=f"epoch {epoch + 1}/{cfg.epochs}", enabled=progress)
        loss_sum, bce_sum, l1_sum, seen, start = 0.0, 0.0, 0.0, 0, time.perf_counter()
        noise = torch.Generator().manual_seed(cfg.seed * 7919 + epoch) if cfg.train_noise > 0 else None
        for images, targets in batches(data, cfg.batch_size, order, cfg.num_workers):
            lr = learning_rate(cfg, record["step"], self.total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            global_batch = images.shape[0]
            if global_batch < self.smallest_batch:  # a last batch too small for every rank (and BatchNorm)
                continue
            images, targets = images[rank::world_size], targets[rank::world_size]  # this rank's share
            x, y = to_input(images, self.device), targets.to(self.device, non_blocking=True)
            if noise is not None:
                x = _add_noise(x, cfg.train_noise, cfg.train_noise_p, noise)
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                out = self.net(x)
            loss, bce = loss_fn(out.logits, y, out.mask_l1, cfg.l1_lambda)
            value = float(loss.detach())
            self._check_loss(value, record, epoch)
            # DDP averages gradients over ranks; weighting each rank by its share of the global batch
            # makes that the gradient of the global batch mean even when the shares differ by one
            share = images.shape[0] * world_size / global_batch
            optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss * share if world_size > 1 else loss).backward()
            if not self.scaler.is_enabled():  # float16 loss scaling skips non-finite steps itself
                self._check_gradients(record, epoch)
            self.scaler.step(optimizer)
            self.scaler.update()
            record["step"] += 1
            b = global_batch
            loss_sum, bce_sum, l1_sum, seen = (loss_sum + value * b, bce_sum + float(bce.detach()) * b,
                                               l1_sum + float(out.mask_l1.detach()) * b, seen + b)
            progress_bar.update(b)
            progress_bar.set_postfix(loss=f"{loss_sum / seen:.3f}", lr=f"{lr:.1e}")
        progress_bar.close()
        elapsed = time.perf_counter() - start
        return {"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "bce": bce_sum / max(seen, 1),
                "mask_l1": l1_sum / max(seen, 1), "images_per_s": seen / max(elapsed, 1e-9),
                "seconds": elapsed, "batches": n_batches}


    def _check_loss(self, value: float, record: dict, epoch: int) -> None:
        """Stop on a loss that is not finite, or above max_loss_ratio times the run's first loss."""
        _, world_size = world()
        if world_size > 1:  # every rank must take the same decision: check the mean over ranks
            total = torch.tensor([value], dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(total)
            value = float(total) / world_size
        where = f"epoch {epoch + 1}, step {record['step'] + 1}"
        if not math.isfinite(value):
            raise Diverged(f"{where}: the loss is {value}")
        first = record.setdefault("first_loss", value)
        limit = self.cfg.max_loss_ratio * max(first, 1.0)
        if self.cfg.max_loss_ratio and value > limit:
            raise Diverged(f"{where}: the loss {value:.4g} is over {self.cfg.max_loss_ratio:g} times the run's "
                           f"first ({first:.4g}; --max-loss-ratio)")

    def _check_gradients(self, record: dict, epoch: int) -> None:
        grads = [p.grad for p in self.net.parameters() if p.grad is not None]
        norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
        if not math.isfinite(norm):
            raise Diverged(f"epoch {epoch + 1}, step {record['step'] + 1}: the gradient norm is {norm}")


def _add_noise(x: torch.Tensor, std: float, p: float, gen: torch.Generator) -> torch.Tensor:
    """The augmentation: each image gets Gaussian noise of ``std`` with probability ``p`` (not clipped,
    as the robustness sweep's noise). Drawn on the CPU from the epoch's generator: resumes repeat it."""
    which = (torch.rand(x.shape[0], generator=gen) < p).float().view(-1, 1, 1, 1)
    eps = torch.randn(x.shape, generator=gen)
    return x + (std * which * eps).to(x.device)


def _smallest_batch(model: HPNet, data: MultiLabelDataset, cfg: TrainConfig, world_size: int) -> int:
    """Images a batch needs: one per rank, two when the features are 1 x 1 (BatchNorm in training
    needs more than one value per channel). One line when no batch can be that large."""
    per_rank = 1
    if len(data):
        if model.extractor.macs(int(data[0][0].shape[-1]))[1] == 1:
            per_rank = 2
    smallest = per_rank * world_size
    if cfg.batch_size < smallest:
        raise HPNetError(f"--batch-size {cfg.batch_size}: the features are 1 x 1 at this image size, and "
                         f"BatchNorm needs at least {smallest} images a batch; use a larger batch or --image-size")
    return smallest


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if not cfg.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _print_epoch(stats: dict, epochs: int) -> None:
    valid = f"  valid mean acc {stats['valid_mean_accuracy']:.4f}" if "valid_mean_accuracy" in stats else ""
    write(f"epoch {stats['epoch']}/{epochs}  loss {stats['loss']:.4f}  bce {stats['bce']:.4f}  "
               f"{stats['images_per_s']:.0f} img/s{valid}")
