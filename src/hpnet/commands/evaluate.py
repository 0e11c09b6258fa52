"""``hpnet eval``: per-attribute accuracy of a run's model against the majority class."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .. import checks
from ..data import DataSpec, default_eval_split, parse_splits
from ..errors import HPNetError
from ..evaluation import evaluate
from ..results import EvaluationResult
from ..run import Run


@dataclass
class EvalSettings:
    """``data``: other data than the run's own (its attributes default to the model's); ``split``:
    default "test", or "valid" when test is empty; ``write``: also write RUN/eval_<split>.json."""

    data: DataSpec | None = None
    split: str | None = field(default=None, metadata={
        "flag": "--split",
        "help": "train, valid, test or several (valid,test); default test, or valid when test is empty"})
    batch_size: int = 256
    write: bool = True

    def __post_init__(self) -> None:
        if self.data is not None and not isinstance(self.data, DataSpec):
            raise HPNetError(f"data must be a DataSpec, got {self.data!r}")
        if self.split is not None:
            parse_splits(self.split)
        checks.count(self.batch_size, "batch_size")
        checks.flag(self.write, "write")


def evaluate_run(run: str | Path | Run, settings: EvalSettings | None = None, device: str = "auto",
                 progress: bool = True) -> EvaluationResult:
    """Per-attribute accuracy of a run's model, with the majority baseline from its training labels."""
    run, s = Run.of(run), settings or EvalSettings()
    model = run.model(device)
    if s.data is None:  # the run's own data (Run checks that it has the model's attributes)
        spec, split = run.data_spec, run.eval_split(s.split)
        data = run.split(split, progress)
    else:
        spec = dataclasses.replace(s.data, attributes=s.data.attributes or model.attribute_names)
        split = s.split or default_eval_split(spec)
        data = run.split(split, progress, spec=spec)
        if data.attribute_names != model.attribute_names:
            raise HPNetError(f"--attributes: the data has {data.attribute_names}, "
                             f"the model was trained on {model.attribute_names}")
    table = evaluate(model, data, run.positive_rates(len(model.attribute_names)), s.batch_size, progress)
    result = EvaluationResult(**table, split=split, dataset=spec.dataset, backbone=model.config.backbone,
                              run=str(run.path))
    if s.write:
        run.write(result)
    return result
