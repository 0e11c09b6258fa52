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

import json
import os
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
PLAIN_DIR = "plain"             # RUN/plain: the run's plain-CNN baseline
# settings that do not change what a run learns (where the data lie, how fast it runs)
NOT_LEARNT = {"train": {"amp", "device", "num_workers"}, "model": {"head_impl", "head_chunk_mb"},
              "data": {"root", "cache_dir"}}
# the fields of ModelConfig that define the network (the others choose how the heads are computed)
ARCHITECTURE = ("attribute_names", "backbone", "widths", "dilations", "stem", "pruned_to", "module", "module_kwargs",
                "head", "l1_norm")


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
        _check_record(record, path / RUN_FILE)
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
        return DataSpec.from_dict(data, f"{self.path / RUN_FILE}: \"data\"")

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.record.get("model"), f"{self.path / RUN_FILE}: \"model\"")

    @property
    def train_settings(self) -> dict:
        """The training settings as recorded (``TrainConfig.from_dict`` makes them a config)."""
        train = self.record.get("train")
        if not isinstance(train, dict):
            raise HPNetError(f"{self.path / RUN_FILE}: the run records no training settings (\"train\")")
        return train

    @property
    def train_positive_rate(self) -> list[float]:
        return list(self.record.get("train_positive_rate") or [])

    def positive_rates(self, attributes: int) -> list[float]:
        """Each attribute's share of positive training labels (the majority baseline needs them)."""
        rates = self.train_positive_rate
        if len(rates) != attributes:
            raise HPNetError(f"{self.path / RUN_FILE}: \"train_positive_rate\" has {len(rates)} values for "
                             f"{attributes} attributes")
        return rates

    # -- the model ---------------------------------------------------------------------------

    def model(self, device: str | torch.device = "cpu", needs_masks: bool | None = None) -> HPNet:
        """The trained model on ``device`` ("auto": CUDA when present), in eval mode.

        The final model when training has ended, else the weights of the last checkpoint. Refused
        with one line: a model file older than the run's checkpoint (training was resumed and has
        not finished), a model.json that disagrees with run.json, weights that are not finite.
        ``needs_masks``: True refuses a plain CNN (linear heads), False refuses attention heads.
        """
        status = self.record.get("status")
        if (self.path / MODEL_FILE).is_file():
            if status not in (None, "done"):
                raise HPNetError(f"{self.path}: the run has not finished (status {status}, {self.record.get('epochs_done')} "
                                 f"of {(self.record.get('train') or {}).get('epochs')} epochs), so its {MODEL_FILE} is "
                                 f"older than its checkpoint; finish it with `hpnet train --resume --out {self.path}`")
            model = HPNet.load(self.path)
        elif not (self.path / CHECKPOINT).is_file():
            why = f"failed ({self.record.get('failure')})" if status == "failed" else f"has no model yet (status {status})"
            raise HPNetError(f"{self.path}: the run {why}; train it again, or choose a finished run")
        else:
            model = load_checkpoint_weights(self.path / CHECKPOINT, HPNet(self.model_config))
        bad = next((name for name, t in model.state_dict().items() if t.is_floating_point()
                    and not torch.isfinite(t).all()), None)
        if bad is not None:
            raise HPNetError(f"{self.path}: the model's weights are not finite ({bad}); the training diverged")
        if needs_masks is True and not model.has_masks:
            raise HPNetError(f"{self.path}: the model has linear heads (plain CNN), so it has no attention "
                             f"masks; this command needs an attention run (train with --head attention)")
        if needs_masks is False and model.has_masks:
            raise HPNetError(f"{self.path}: the model has attention heads; it must be a plain CNN (--head linear)")
        self._check_config(model.config)
        device = resolve_device(device) if isinstance(device, str) else device
        return model.to(device).eval()

    def _check_config(self, config: ModelConfig) -> None:
        """run.json and model.json must describe the same network."""
        recorded = self.model_config.to_dict()
        saved = config.to_dict()
        for key in ARCHITECTURE:
            if recorded.get(key) != saved.get(key):
                raise HPNetError(f"{self.path}: run.json and model.json disagree on {key} "
                                 f"({recorded.get(key)!r} and {saved.get(key)!r}); one of them was edited")

    def network_name(self, root: str | Path | None = None) -> str:
        """How every result and log names this run's network: its folder relative to ``root`` (default:
        the folder's parent) and its head, e.g. "demo (attention)", "demo/plain (linear)"."""
        path = self.path.resolve()
        base = Path(root).resolve() if root is not None else path.parent
        return f"{Path(os.path.relpath(path, base)).as_posix()} ({self.model_config.head})"

    def setting_differences(self, asked: dict[str, dict], label: str = "asked") -> list[str]:
        """Each setting of ``asked`` (``{"data": {...}, "model": {...}, "train": {...}}``, any subset of
        keys) that changes what is learnt and differs from the run's record, as "part.key=recorded
        (label: asked)"."""
        recorded = {"data": self.data_spec.to_dict(), "model": self.model_config.to_dict(), "train": self.train_settings}
        return [f"{part}.{key}={_plain(recorded[part].get(key))} ({label}: {_plain(value)})"
                for part in ("data", "model", "train") for key, value in (asked.get(part) or {}).items()
                if key not in NOT_LEARNT[part] and _plain(recorded[part].get(key)) != _plain(value)]

    def baseline(self, path: str | Path | None = None) -> "Run | None":
        """The run's plain-CNN baseline: the run at ``path`` (default RUN/plain), checked against this
        run (same attributes, same number of feature channels); None when RUN/plain holds no model."""
        folder = Path(path) if path is not None else self.path / PLAIN_DIR
        if path is None and not (folder / MODEL_FILE).is_file():
            return None
        other = Run.open(folder)
        mine, theirs = self.model_config, other.model_config
        if theirs.attribute_names != mine.attribute_names:
            raise HPNetError(f"{folder}: the baseline was trained on {theirs.attribute_names}, "
                             f"the run on {mine.attribute_names}")
        if theirs.channels != mine.channels:
            raise HPNetError(f"{folder}: the baseline has {theirs.channels} feature channels, the run "
                             f"{mine.channels}; the same channels are perturbed in both")
        return other

    def derive(self, model: HPNet, out: str | Path, **extra: Any) -> "Run":
        """Write ``model`` to ``out`` as a run folder that every command accepts, and open it.

        The record is this run's (data, training settings, training positive rates; not its
        history or mask statistics) with ``model``'s config, status "done" and ``extra`` (where the
        model came from: e.g. ``pruned_from`` and ``kept_channels``).
        """
        out = Path(out)
        model.cpu().save(out)
        record = {k: v for k, v in self.record.items() if k not in ("history", "masks")}
        record.update(model=model.config.to_dict(), status="done", **extra)
        atomic_write_json(record, out / RUN_FILE)
        return Run.open(out)

    # -- its data ----------------------------------------------------------------------------

    def eval_split(self, split: str | None = None) -> str:
        """``split``, or the default evaluation split: "test", or "valid" when test is empty."""
        return split or default_eval_split(self.data_spec)

    def split(self, split: str, progress: bool = True, spec: DataSpec | None = None) -> MultiLabelDataset:
        """The images of ``split`` of the run's data (or of ``spec``); a one-line error when empty or,
        for the run's own data, when its attributes are not the model's."""
        own = spec is None
        spec = spec or self.data_spec
        data = require_nonempty(load_split(spec, split, progress), spec, split)
        if own and data.attribute_names != self.model_config.attribute_names:
            raise HPNetError(f"{self.path / RUN_FILE}: its data settings give the attributes {data.attribute_names}, "
                             f"but its model was trained on {self.model_config.attribute_names}")
        return data

    def eval_data(self, split: str | None = None, progress: bool = True) -> tuple[str, MultiLabelDataset]:
        """(the evaluation split's name, its images)."""
        split = self.eval_split(split)
        return split, self.split(split, progress)

    def view_data(self, split: str, progress: bool = True) -> tuple[str, MultiLabelDataset]:
        """(name, images) of the split that what a person sees is read from, other than the evaluation
        ``split``: "valid", or "train" when valid is the evaluation split or empty."""
        name = "valid" if split == "test" else "train"
        data = load_split(self.data_spec, name, progress)
        if len(data) == 0:
            name, data = "train", self.split("train", progress)
        return name, data

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


# what each key of run.json must be, when it is there
_RECORD_KEYS = {"model": dict, "train": dict, "data": (dict, type(None)), "history": list, "status": str,
                "epochs_done": int, "train_positive_rate": list, "masks": (dict, type(None))}


def _check_record(record, path: Path) -> None:
    """One line for a run.json that is not a run record (the commands read these keys)."""
    if not isinstance(record, dict):
        raise HPNetError(f"{path}: not a run record (expected a JSON object)")
    for key, kind in _RECORD_KEYS.items():
        if key in record and not isinstance(record[key], kind):
            raise HPNetError(f"{path}: \"{key}\" is not a {_kind(kind)}: {str(record[key])[:60]!r}")
    for epoch in record.get("history", []):
        if not isinstance(epoch, dict) or not all(isinstance(epoch.get(k), (int, float)) for k in ("epoch", "loss")):
            raise HPNetError(f"{path}: \"history\" must list epochs with a number \"epoch\" and \"loss\", "
                             f"got {str(epoch)[:60]!r}")
    if not all(isinstance(r, (int, float)) for r in record.get("train_positive_rate", [])):
        raise HPNetError(f"{path}: \"train_positive_rate\" must be numbers")
    masks = record.get("masks")
    if masks is not None and not all(isinstance(masks.get(k), (int, float)) for k in ("mean", "sparsity", "threshold", "images")):
        raise HPNetError(f"{path}: \"masks\" must hold the numbers mean, sparsity, threshold and images")


def _plain(value):
    """A setting as JSON gives it back (tuples as lists), for comparing a record with what is asked."""
    return json.loads(json.dumps(value))


def _kind(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    words = {dict: "JSON object", list: "list", str: "string", int: "integer", type(None): "null"}
    return " or ".join(words[k] for k in kinds)
