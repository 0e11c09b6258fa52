"""A run folder as one object: its record, data, model, evaluation split and results.

Every command that works on a trained run starts with :meth:`Run.open` and asks it for what it
needs, so that each check is made once, with one message, in one place:

    run = Run.open("runs/demo")
    model = run.model(device="cpu", needs_masks=True)      # the final model, or the last checkpoint
    split, data = run.eval_data()                          # "test", or "valid" when test is empty
    run.write(result)                                      # RUN/<result's file>, atomically
    pruning = run.read(PruningResult)                      # None when the file is not there yet

The folder's layout is :mod:`hpnet.checkpoint`'s (what training writes) plus one file per result
type of :mod:`hpnet.results`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import torch

from .checkpoint import CHECKPOINT, MODEL_FILE, RUN_FILE, load_checkpoint_weights
from .core.stream import image_count, resolve_device
from .data import DataSpec, default_eval_split, load_split, require_nonempty
from .data.base import MultiLabelDataset
from .errors import HPNetError
from .evaluation import majority_accuracy
from .io import atomic_write_json, read_json
from .model import HPNet, ModelConfig
from .results import EvaluationResult, Result

R = TypeVar("R", bound=Result)


class Run:
    """A run folder: ``path`` and its record (``run.json`` as a dict)."""

    def __init__(self, path: str | Path, record: dict):
        self.path = Path(path)
        self.record = record

    @classmethod
    def of(cls, run: "str | Path | Run") -> "Run":
        """``run`` itself when it is a Run, else the run in that folder."""
        return run if isinstance(run, Run) else cls.open(run)

    @classmethod
    def open(cls, path: str | Path) -> "Run":
        """The run in folder ``path``; one-line errors for a missing folder or a bad run.json."""
        path = Path(path)
        if not path.is_dir():
            raise HPNetError(f"{path}: run folder not found")
        record = read_json(path / RUN_FILE)
        if not isinstance(record, dict):
            raise HPNetError(f"{path / RUN_FILE}: not a run record (expected a JSON object)")
        return cls(path, record)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    # -- what the record says ----------------------------------------------------------------

    @property
    def data_spec(self) -> DataSpec:
        """The data the run was trained on (the one check and message for a run without one)."""
        data = self.record.get("data")
        if not data:
            raise HPNetError(f"{self.path / RUN_FILE}: the run records no data settings (\"data\" is "
                             f"missing or null), so its images cannot be found; train it with `hpnet train`")
        if not isinstance(data, dict):
            raise HPNetError(f"{self.path / RUN_FILE}: \"data\" must be a JSON object, got {data!r}")
        return DataSpec.from_dict(data)

    @property
    def model_config(self) -> ModelConfig:
        config = self.record.get("model")
        if not isinstance(config, dict):
            raise HPNetError(f"{self.path / RUN_FILE}: the run records no model settings (\"model\")")
        return ModelConfig.from_dict(config)

    @property
    def train_positive_rate(self) -> list[float]:
        return list(self.record.get("train_positive_rate") or [])

    # -- the model ---------------------------------------------------------------------------

    def model(self, device: str | torch.device = "cpu", needs_masks: bool | None = None) -> HPNet:
        """The trained model on ``device`` ("auto": CUDA when present), in eval mode.

        The final model when training has ended, else the weights of the last checkpoint.
        ``needs_masks``: True refuses a plain CNN (linear heads), False refuses attention heads.
        """
        if (self.path / MODEL_FILE).is_file():
            model = HPNet.load(self.path)
        else:
            model = load_checkpoint_weights(self.path / CHECKPOINT, HPNet(self.model_config))
        if needs_masks is True and not model.has_masks:
            raise HPNetError(f"{self.path}: the model has linear heads (plain CNN), so it has no attention "
                             f"masks; this command needs an attention run (train with --head attention)")
        if needs_masks is False and model.has_masks:
            raise HPNetError(f"{self.path}: the model has attention heads; it must be a plain CNN (--head linear)")
        device = resolve_device(device) if isinstance(device, str) else device
        return model.to(device).eval()

    # -- its data ----------------------------------------------------------------------------

    def eval_split(self, split: str | None = None) -> str:
        """``split``, or the default evaluation split: "test", or "valid" when test is empty."""
        return split or default_eval_split(self.data_spec)

    def split(self, split: str, progress: bool = True, spec: DataSpec | None = None) -> MultiLabelDataset:
        """The images of ``split`` of the run's data (or of ``spec``); a one-line error when empty."""
        spec = spec or self.data_spec
        return require_nonempty(load_split(spec, split, progress), spec, split)

    def eval_data(self, split: str | None = None, progress: bool = True) -> tuple[str, MultiLabelDataset]:
        """(the evaluation split's name, its images)."""
        split = self.eval_split(split)
        return split, self.split(split, progress)

    def majority_baseline(self, data: MultiLabelDataset, max_images: int | None = None) -> float | None:
        """Mean accuracy on the first ``max_images`` of ``data`` of always answering each attribute's
        majority class of the run's training labels (None when they do not match)."""
        return majority_accuracy(self.train_positive_rate, data.targets[:image_count(data, max_images)])

    # -- results -----------------------------------------------------------------------------

    def write(self, result: Result) -> Path:
        """Write ``result`` to its file in the run folder, atomically; returns the path."""
        path = self.path / result.file_name
        atomic_write_json(result.to_json(), path)
        return path

    def read(self, kind: type[R], **key: Any) -> R | None:
        """The result of type ``kind`` (``key``: e.g. ``split=`` for evaluations); None when absent."""
        path = self.path / kind.file_for(**key)
        if not path.is_file():
            return None
        return kind.from_json(read_json(path), str(path))

    def evaluations(self) -> list[EvaluationResult]:
        """Every evaluation written into the run folder, by file name."""
        return [EvaluationResult.from_json(read_json(p), str(p))
                for p in sorted(self.path.glob(EvaluationResult.PATTERN))]
