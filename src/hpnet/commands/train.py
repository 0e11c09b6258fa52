"""``hpnet train``: train a network into a run folder, or continue a killed run."""
from __future__ import annotations

from pathlib import Path

import torch

from .. import checks
from ..checkpoint import CHECKPOINT, RUN_FILE
from ..data import DataSpec, load_split, require_nonempty
from ..errors import HPNetError
from ..io import check_output
from ..model import HPNet, ModelConfig
from ..run import Run
from ..train import TrainConfig, fit


def train_run(out: str | Path, data: DataSpec | None, model: dict | None = None,
              train: TrainConfig | None = None, resume: bool = False, progress: bool = True) -> dict:
    """Train a model on ``data`` into the run folder ``out``; returns the run record.

    ``model`` holds ModelConfig fields other than the attribute names (backbone, widths, ...).
    With ``resume=True`` the run continues from ``out/checkpoint.safetensors`` with the settings
    stored in the run; ``train.epochs``, when given, may raise the number of epochs.
    """
    out = check_output(checks.path(out, "--out"), "--out", folder=True)
    if resume:
        data, model, train = _resume_settings(out, train.epochs if train else None)
    elif (out / CHECKPOINT).exists():
        raise HPNetError(f"{out}: already holds a run; use --resume to continue it or another --out")
    train = train or TrainConfig()
    train_data = require_nonempty(load_split(data, "train", progress), data, "train",
                                  "training needs images in it (see the partition file or the CSV's split column)")
    valid_data = load_split(data, "valid", progress)
    config = ModelConfig(attribute_names=train_data.attribute_names, **(model or {}))
    torch.manual_seed(train.seed)  # the initial weights are part of the run's seed
    net = HPNet(config)
    return fit(net, train_data, valid_data, train, out, data_spec=data, resume=resume, progress=progress)


def _resume_settings(out: Path, epochs: int | None) -> tuple[DataSpec, dict, TrainConfig]:
    if not (out / CHECKPOINT).is_file():
        raise HPNetError(f"{out / CHECKPOINT}: no checkpoint to resume from")
    run = Run.open(out)
    stored = TrainConfig.from_dict(run.train_settings, f"{run.file(RUN_FILE)}: \"train\"")
    stored.epochs = max(stored.epochs, epochs or 0)
    model = {k: v for k, v in run.model_config.to_dict().items() if k != "attribute_names"}
    return run.data_spec, model, stored
