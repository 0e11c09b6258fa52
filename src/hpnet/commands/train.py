"""``hpnet train``: train a network into a run folder, or continue a killed run."""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch

from .. import checks
from ..checkpoint import CHECKPOINT, MODEL_FILE, RUN_FILE
from ..data import DataSpec, load_split, require_nonempty
from ..distributed import launched_rank
from ..errors import HPNetError
from ..folders import claimed, clear
from ..io import check_output
from ..model import BACKBONES, HPNet, ModelConfig
from ..model.weights import fitted_state, read_state
from ..predictability.human import HITL_DIR
from ..results import RESULTS, EvaluationResult
from ..run import Run
from ..train import TrainConfig, fit


def train_run(out: str | Path, data: DataSpec | None, model: dict | None = None,
              train: TrainConfig | None = None, resume: bool = False, progress: bool = True,
              overwrite: bool = False) -> dict:
    """Train a model on ``data`` into the run folder ``out``; returns the run record.

    ``model`` holds ModelConfig fields other than the attribute names (backbone, widths, ...).
    With ``resume=True`` the run continues from ``out/checkpoint.safetensors`` with the settings
    stored in the run: ``train.epochs``, when given, may raise the number of epochs, and any other
    setting given (``data``, ``model``, ``train``: dataclasses, or dicts of some of their fields)
    must be the recorded one, or the resume is refused naming each difference.

    The folder is claimed while it is written (:func:`hpnet.folders.claimed`): a second training
    into it is refused naming the first. A folder holding another run or its results is refused
    too, unless ``overwrite`` clears it first (only a folder hpnet wrote is cleared).
    """
    out = check_output(checks.path(out, "--out"), "--out", folder=True)
    if overwrite and resume:
        raise HPNetError("--overwrite clears the folder that --resume would continue: give one of them")
    claim = claimed(out, by="hpnet train") if launched_rank() == 0 else nullcontext(out)   # rank 0 writes for a group
    with claim:
        if overwrite:
            clear(out)
        if resume:
            data, model, train = _resume_settings(out, _fields(data), dict(model or {}), _fields(train))
        elif (out / CHECKPOINT).exists():
            raise HPNetError(f"{out}: already holds a run; use --resume to continue it, --overwrite to replace it, "
                             f"or another --out")
        else:
            _refuse_finished(out)
        train = train or TrainConfig()
        _check_model(dict(model or {}), None if resume else train.backbone_weights)
        train_data = require_nonempty(load_split(data, "train", progress), data, "train",
                                      "training needs images in it (see the partition file or the CSV's split column)")
        valid_data = load_split(data, "valid", progress)
        config = ModelConfig(attribute_names=train_data.attribute_names, **(model or {}))
        torch.manual_seed(train.seed)  # the initial weights are part of the run's seed
        net = HPNet(config)
        return fit(net, train_data, valid_data, train, out, data_spec=data, resume=resume, progress=progress)


# what a finished run folder holds besides run.json: training over it would leave these beside a new model
FINISHED = (MODEL_FILE, "report.html", "plain", HITL_DIR, *(r.FILE for r in RESULTS if "{" not in r.FILE))


def _refuse_finished(out: Path) -> None:
    """One line when ``out`` holds a finished run or its results (a pruned save, an export, ...)."""
    found = [name for name in FINISHED if (out / name).exists()] + [p.name for p in out.glob(EvaluationResult.PATTERN)]
    if found:
        raise HPNetError(f"{out}: holds a finished run ({', '.join(sorted(found)[:4])}); training there would "
                         f"replace its model beside its old results: choose another --out, or --overwrite to clear it first")


def _resume_settings(out: Path, data: dict, model: dict, train: dict) -> tuple[DataSpec, dict, TrainConfig]:
    """The recorded settings of the run in ``out``; ``train["epochs"]`` may raise its epochs, every
    other setting asked must be the recorded one."""
    if not (out / CHECKPOINT).is_file():
        raise HPNetError(f"{out / CHECKPOINT}: no checkpoint to resume from")
    run = Run.open(out)
    epochs = train.pop("epochs", None)
    differ = run.setting_differences({"data": data, "model": model, "train": train})
    if differ:
        raise HPNetError(f"{out}: --resume continues the run with its recorded settings, and these differ: "
                         f"{', '.join(differ)}; only --epochs may change (train into another --out instead)")
    stored = TrainConfig.from_dict(run.train_settings, f"{run.file(RUN_FILE)}: \"train\"")
    stored.epochs = max(stored.epochs, epochs or 0)
    recorded = {k: v for k, v in run.model_config.to_dict().items() if k != "attribute_names"}
    return run.data_spec, recorded, stored


def _check_model(model: dict, weights: str | None) -> None:
    """One line before the data are read for model settings that no data could make valid (a
    backbone's widths, a head it cannot carry) and for backbone ``weights`` that do not fit it."""
    config = ModelConfig(attribute_names=["-"], **model)
    if weights:
        fitted_state(read_state(weights), BACKBONES.get(config.backbone).make(config), weights, config.backbone)


def _fields(settings) -> dict:
    """A settings dataclass's fields as a dict (a dict as it is, None as {})."""
    if settings is None:
        return {}
    return dict(settings) if isinstance(settings, dict) else settings.to_dict()
