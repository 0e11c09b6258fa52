"""Multi-process training under torchrun: one code path with single-process training.

``torchrun --nproc_per_node=N -m hpnet train ...`` starts N processes with RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT set. :func:`hpnet.train.fit` calls :func:`init_distributed`
(a no-op without those variables), wraps the model in DistributedDataParallel and gives each
rank ``images[rank::world_size]`` of every global batch; rank 0 alone logs, evaluates and writes.
Backend: NCCL when training on CUDA (one GPU per LOCAL_RANK), gloo on CPU. The group stays up
after training (callers ask ``is_main()`` before printing or evaluating) and is left at exit.
"""
from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist


def launched_world_size() -> int:
    """WORLD_SIZE as torchrun set it (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    """RANK as torchrun set it (0 when not launched by torchrun): known before the group is joined."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True on rank 0 (and in single-process runs): the process that logs and writes files."""
    return world()[0] == 0


def device_for_rank(device: torch.device) -> torch.device:
    """Under torchrun, CUDA means this process's GPU (cuda:LOCAL_RANK)."""
    if device.type == "cuda" and device.index is None and launched_world_size() > 1:
        return torch.device("cuda", local_rank())
    return device


def init_distributed(device: torch.device | str | None = None) -> bool:
    """Join the process group torchrun describes; True when this call created it.

    Nothing happens outside torchrun (WORLD_SIZE unset or 1) or when a group already exists.
    ``device`` picks the backend: NCCL for CUDA (and sets this process's GPU), gloo otherwise.
    """
    if not dist.is_available() or dist.is_initialized() or launched_world_size() <= 1:
        return False
    device = torch.device(device) if device is not None else \
        torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device_for_rank(device))
        dist.init_process_group(backend="nccl")
    else:
        dist.init_process_group(backend="gloo")
    atexit.register(_leave)
    return True


def _leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def close_distributed() -> None:
    """Wait for every rank, then leave the process group (no-op outside one)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
