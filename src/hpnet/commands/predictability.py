"""``hpnet predictability``: human predictability of a run's network against a plain CNN, under every operation."""
from __future__ import annotations

import time
from pathlib import Path

from ..checkpoint import CHECKPOINT, MODEL_FILE, RUN_FILE
from ..core.stream import model_device
from ..data.base import MultiLabelDataset
from ..evaluation import evaluate
from ..model import HPNet
from ..predictability import PredictabilitySettings, score_networks
from ..report.predictability import write_predictability_figures
from ..results import EvaluationResult, PredictabilityResult
from ..run import PLAIN_DIR, Run
from ..train import TrainConfig
from .train import train_run


def predictability_run(run: str | Path | Run, settings: PredictabilitySettings | None = None,
                       device: str = "auto", progress: bool = True) -> PredictabilityResult:
    """Score the run's network and a plain CNN under every operation; writes RUN/predictability.json
    and figures.

    Without ``settings.plain_run`` the baseline is trained into RUN/plain/ by the train command
    (head "linear"; the run's data, backbone, widths and training settings; ``settings.epochs``
    overrides the run's epochs) and reused on later calls. Operations are measured on the evaluation
    split (test, or valid when test is empty); the human-side views come from the validation images
    (training images when valid is the evaluation split). Accuracies are over the whole split.
    Networks are named by ``Run.network_name`` relative to the run's parent folder.
    """
    start = time.perf_counter()
    run, s = Run.of(run), settings or PredictabilitySettings()
    model = run.model(device, needs_masks=True)
    if s.plain_run is None:
        _train_plain(run, run.file(PLAIN_DIR), s.epochs, progress)
    plain_run = run.baseline(s.plain_run or run.file(PLAIN_DIR))
    plain = plain_run.model(model_device(model), needs_masks=False)
    train_s = time.perf_counter() - start
    split, data = run.eval_data(progress=progress)
    views_split, views = run.view_data(split, progress)
    root = run.path.resolve().parent
    names = {run.network_name(root): (run, model), plain_run.network_name(root): (plain_run, plain)}
    result = score_networks({name: net for name, (_, net) in names.items()}, data, views, s, progress)
    rates = run.positive_rates(len(model.attribute_names))
    for role, (name, (r, net)) in zip(("run", "baseline"), names.items()):
        result.networks[name].update(run=str(r.path), role=role)
        result.accuracy[name] = _accuracy(r, net, data, split, rates)
    result.settings = {"run": str(run.path), "plain_run": str(plain_run.path), "plain_trained_here": s.plain_run is None,
                       "split": split, **result.settings, "usage_split": views_split}
    result.seconds = {"plain_training": train_s, **result.seconds, "total": time.perf_counter() - start}
    run.write(result)
    write_predictability_figures(run.path, result)
    return result


def _train_plain(run: Run, plain_dir: Path, epochs: int | None, progress: bool) -> None:
    """Train the plain-CNN baseline into ``plain_dir`` unless a finished one is there already."""
    if (plain_dir / MODEL_FILE).is_file():
        return
    cfg = TrainConfig.from_dict(run.train_settings, f"{run.file(RUN_FILE)}: \"train\"")
    cfg.epochs = int(epochs) if epochs is not None else cfg.epochs
    model = {k: v for k, v in run.model_config.to_dict().items() if k != "attribute_names"}
    model["head"] = "linear"
    train_run(plain_dir, run.data_spec, model, cfg, resume=(plain_dir / CHECKPOINT).is_file(), progress=progress)


def _accuracy(run: Run, model: HPNet, data: MultiLabelDataset, split: str, rates: list[float]) -> dict:
    """Mean and per-attribute accuracy on the whole split: the run's evaluation when it has one."""
    table = run.read(EvaluationResult, split=split)
    if table is None or table.images != len(data):
        table = EvaluationResult(**evaluate(model, data, rates, 256), split=split)
    return {"mean_accuracy": table.mean_accuracy, "mean_majority_baseline": table.mean_majority_baseline,
            "per_attribute": [r["accuracy"] for r in table.per_attribute], "split": split, "images": table.images}
