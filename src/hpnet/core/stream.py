"""Streaming passes over a data set: batches on the device, eval mode, no grad.

Every pass over a data set (training epochs, evaluation, operations, analyses) goes through
:func:`batches`, and every inference pass through :func:`stream`, so that image caps, devices and the
``[0, 1]`` input scaling are handled in one place; :func:`inference` puts a model in eval mode
without gradients and restores its previous mode afterwards.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

import torch
import torch.nn as nn

from ..data.base import ArrayDataset, MultiLabelDataset
from ..errors import HPNetError
from ..progress import bar as progress_bar


def check_device(name: str) -> str:
    """``name`` when it names a device torch knows ("auto", "cpu", "cuda", "cuda:1", ...)."""
    if name != "auto":
        try:
            torch.device(name)
        except (RuntimeError, TypeError, ValueError):
            raise HPNetError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    return name


def resolve_device(name: str = "auto") -> torch.device:
    """"auto": CUDA when present, else the CPU; otherwise the named device, which must be present."""
    if check_device(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and (not torch.cuda.is_available()
                                  or (device.index or 0) >= torch.cuda.device_count()):
        raise HPNetError(f"--device {name}: no such CUDA device on this machine "
                         f"({torch.cuda.device_count()} found)")
    if device.type not in ("cpu", "cuda") and device.type != "mps":
        raise HPNetError(f"--device {name}: only cpu and cuda devices are supported")
    return device


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def to_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> float in [0, 1] on the device (the conversion happens there)."""
    return images.to(device, non_blocking=True).float().div_(255.0)


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


def image_count(data: MultiLabelDataset, max_images: int | None = None) -> int:
    """How many images a pass uses: all, or the first ``max_images``."""
    return len(data) if max_images is None else min(len(data), int(max_images))


def stream(data: MultiLabelDataset, batch_size: int, device: torch.device, max_images: int | None = None,
           progress: bool = False, desc: str = "") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x in [0, 1] on ``device``, targets on ``device``) over the first ``max_images`` images, in order."""
    n = image_count(data, max_images)
    order = torch.arange(n)
    bar = progress_bar(total=n, desc=desc, enabled=progress)
    for images, targets in batches(data, batch_size, order):
        yield to_input(images, device), targets.to(device, non_blocking=True).float()
        bar.update(images.shape[0])
    bar.close()


def head(data: MultiLabelDataset, n: int) -> ArrayDataset:
    """The first ``n`` images as an in-memory ArrayDataset."""
    n = min(n, len(data))
    if isinstance(data, ArrayDataset):
        return ArrayDataset(data.images[:n], data.targets[:n], data.attribute_names)
    images = torch.stack([data.image(i) for i in range(n)])
    return ArrayDataset(images, data.targets[:n], data.attribute_names)


@contextlib.contextmanager
def inference(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no grad for the block; the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def correct_counts(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-attribute count of correct decisions (logit > 0 means 1), float64 (K,)."""
    return ((logits > 0).float() == targets).sum(0).double().cpu()


def median_latency(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time in seconds of ``fn()`` over ``repeats`` calls, after ``warmup`` calls."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
