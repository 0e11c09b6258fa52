"""The files training writes into a run folder, and the checkpoint format.

A run folder holds ``run.json`` (data, model and training settings, history), ``checkpoint.safetensors``
(weights, optimizer state and progress, rewritten atomically after every epoch) and, once training
ends, ``model.safetensors`` + ``model.json``. Checkpoints are safetensors with JSON metadata: loading
one never runs code.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .errors import HPNetError
from .io import atomic_save_tensors, load_tensors, read_metadata
from .model import HPNet

RUN_FILE = "run.json"
CHECKPOINT = "checkpoint.safetensors"
MODEL_FILE = "model.safetensors"


def save_checkpoint(path: Path, model: HPNet, optimizer: torch.optim.Optimizer, state: dict) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, pstate in opt["state"].items():
        for name, value in pstate.items():
            tensors[f"optim.{idx}.{name}"] = torch.as_tensor(value)
    meta = {"state": json.dumps(state), "param_groups": json.dumps(opt["param_groups"])}
    atomic_save_tensors(tensors, path, metadata=meta)


def load_checkpoint(path: Path, model: HPNet, optimizer: torch.optim.Optimizer) -> dict:
    """Load the model and optimizer state saved by :func:`save_checkpoint`; returns the run record."""
    tensors = load_tensors(path)
    meta = read_metadata(path)
    model.load_tensors({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    opt_state: dict[int, dict] = {}
    try:
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                opt_state.setdefault(int(idx), {})[name] = value
        optimizer.load_state_dict({"state": opt_state, "param_groups": json.loads(meta["param_groups"])})
        record = json.loads(meta["state"])
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise HPNetError(f"{path}: not a training checkpoint of this run (its optimizer state or metadata "
                         f"is missing or damaged: {type(e).__name__} {e})") from None
    if not isinstance(record, dict) or not {"epochs_done", "step", "train", "history"} <= set(record):
        raise HPNetError(f"{path}: not a training checkpoint of this run (its metadata holds no run record)")
    return record


def load_checkpoint_weights(path: Path, model: HPNet) -> HPNet:
    """The model weights of a checkpoint, loaded into ``model`` (optimizer state left out)."""
    tensors = load_tensors(path)
    model.load_tensors({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    return model
