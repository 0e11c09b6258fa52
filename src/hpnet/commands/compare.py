"""``hpnet compare``: network configurations trained and scored over several seeds, same data and budget.

Each configuration (a head family, optionally another L1 strength or the noise augmentation) is
trained once per seed into ``OUT/<config>/seed<N>/`` (a run folder every command accepts; a finished
run is reused, a killed one resumed, one trained with other settings refused), then scored by the
same measurements for every network:

- test accuracy (and the majority baseline);
- the predictability of every registered operation that applies to the network
  (:func:`hpnet.predictability.score_network`), ``<operation>_score`` by its primary predictor and
  ``<operation>_score_<predictor>`` by the one it defines alike for every network
  (``Operation.shared_predictor``: for pruning each channel's mean |contribution| to the logit, for
  the tone curve the mean masks weighted by the channels' activations); localisation of the masks,
  of what the classifier pools (sum_c |w_kc g(M_kc) z_c|), Grad-CAM and saliency (synthetic faces
  only);
- the channels' roles (:func:`hpnet.predictability.role_consistency`, on faces whose parts are
  known): the share of channels with a face part, and the semantic consistency (the mean share of
  each attribute's evidence on channels whose part is in its evidence region) with its chance under
  a random assignment of the roles, and their difference;
- semantic minus random pruning at half the channels, with the classifiers reconstructed and
  unchanged (:func:`hpnet.ops.pruning.prune_model`);
- accuracy under Gaussian input noise, with the identity and with the per-attribute tone curve
  chosen on validation images at that noise level (:mod:`hpnet.ops.robust`).

Every metric is reported as the mean over seeds with a 95% Student-t interval
(:func:`hpnet.core.stats.seed_interval`) in ``OUT/compare.json``; ``OUT/report.html`` shows them.
"""
from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import checks
from ..checkpoint import CHECKPOINT, MODEL_FILE
from ..core.stats import seed_interval
from ..data import DataSpec
from ..errors import HPNetError
from ..folders import claimed, clear
from ..io import atomic_write_json, check_output
from ..model import HEADS, HPNet
from ..ops.pruning import CurveSettings, PruneSettings, ScanSettings, prune_model
from ..ops.robust import robustness_sweep, select_transform
from ..predictability import PredictabilitySettings, score_network
from ..report.compare import write_compare_report
from ..results import CompareResult, EvaluationResult
from ..run import Run
from ..train import TrainConfig
from .evaluate import evaluate_run
from .train import train_run


@dataclass
class CompareSettings:
    """Which configurations, over which seeds, and how they are scored.

    ``heads``: head families (names of :data:`hpnet.model.HEADS`); ``l1_lambdas``: further L1
    strengths, each a configuration of every head with masks; ``train_noises``: further
    configurations trained with Gaussian noise of these stds on half the images; ``variant_heads``:
    the heads that get those variants (default: all of ``heads``); ``seeds``:
    training seeds (the data stay the same); ``noise_stds``: the input noise levels measured;
    ``scoring``: how predictability and localisation are measured.
    """

    heads: Sequence[str] = field(default=("attention", "channel", "context", "linear"), metadata={
        "flag": "--heads", "choices": HEADS, "help": "head families (default {default})"})
    seeds: Sequence[int] = field(default=(0, 1, 2), metadata={
        "flag": "--seeds", "help": "training seeds (default {default})"})
    l1_lambdas: Sequence[float] = field(default=(), metadata={
        "flag": "--l1-lambdas", "help": "further L1 strengths, each a configuration of every head with masks"})
    train_noises: Sequence[float] = field(default=(), metadata={
        "flag": "--train-noises",
        "help": "further configurations trained with Gaussian noise of these stds (--train-noise-p)"})
    variant_heads: Sequence[str] | None = field(default=None, metadata={
        "flag": "--variant-heads",
        "help": "the heads that get the --l1-lambdas and --train-noises variants (default all)"})
    noise_stds: Sequence[float] = field(default=(0.0, 0.1, 0.2, 0.3), metadata={
        "flag": "--noise", "help": "input noise stds measured (default {default})"})
    prune_fraction: float = 0.5
    scoring: PredictabilitySettings = field(default_factory=PredictabilitySettings)

    def __post_init__(self) -> None:
        self.heads = checks.names(self.heads, "--heads")
        for head in self.heads:
            checks.choice(head, "--heads", HEADS.names())
        self.seeds = checks.seeds(self.seeds, "--seeds")
        if len(set(self.seeds)) != len(self.seeds):
            raise HPNetError(f"--seeds lists a seed twice: {self.seeds}")
        self.l1_lambdas = _distinct([checks.number(v, "--l1-lambdas", 0) for v in self.l1_lambdas], "--l1-lambdas")
        self.train_noises = _distinct([checks.number(v, "--train-noises", 0, low_open=True) for v in self.train_noises],
                                      "--train-noises")
        if self.variant_heads is not None:
            self.variant_heads = checks.names(self.variant_heads, "--variant-heads")
            for head in self.variant_heads:
                checks.choice(head, "--variant-heads", self.heads)
        self.noise_stds = checks.numbers(self.noise_stds, "--noise", 0)
        checks.number(self.prune_fraction, "prune_fraction", 0, 1, low_open=True)


def _distinct(values: list[float], name: str) -> list[float]:
    """``values``, refused in one line when two are the same number or would share a configuration's
    name (and folder), which is the value written with ``:g``."""
    seen: dict[str, float] = {}
    for v in values:
        if f"{v:g}" in seen:
            same = "is listed twice" if seen[f"{v:g}"] == v else f"and {seen[f'{v:g}']!r} would share the name {v:g}"
            raise HPNetError(f"{name}: {v!r} {same}; give distinct values")
        seen[f"{v:g}"] = v
    return values


@dataclass(frozen=True)
class Config:
    name: str
    head: str
    l1_lambda: float
    train_noise: float

    @property
    def folder(self) -> str:
        return re.sub(r"[^A-Za-z0-9.=_-]+", "_", self.name)


def configurations(settings: CompareSettings, train: TrainConfig) -> list[Config]:
    """Every head at the training settings, then the extra L1 strengths (heads with masks) and the
    noise-augmented variants."""
    configs = []
    variants = settings.heads if settings.variant_heads is None else settings.variant_heads
    for head in settings.heads:
        configs.append(Config(head, head, train.l1_lambda, train.train_noise))
        if head not in variants:
            continue
        if HEADS.get(head).masks:
            configs += [Config(f"{head} l1={v:g}", head, v, train.train_noise)
                        for v in settings.l1_lambdas if v != train.l1_lambda]
        configs += [Config(f"{head} noise={v:g}", head, train.l1_lambda, v)
                    for v in settings.train_noises if v != train.train_noise]
    return configs


def compare_run(out: str | Path, data: DataSpec, model: dict, train: TrainConfig,
                settings: CompareSettings | None = None, device: str = "auto", progress: bool = True,
                overwrite: bool = False) -> CompareResult:
    """Train and score every configuration over every seed into ``out``; writes compare.json and
    report.html there and returns the result. ``model``: ModelConfig fields other than the head and
    the attribute names (backbone, widths, ...); ``train``: the budget every network gets.

    A run already in ``out`` with the same settings is reused (a killed one resumed); ``overwrite``
    clears ``out`` first. The folder is claimed while the comparison writes it: a second
    comparison into it is refused naming the first."""
    s = settings or CompareSettings()
    out = check_output(checks.path(out, "--out"), "--out", folder=True)
    with claimed(out, by="hpnet compare"):
        if overwrite:
            clear(out)
        result = _compare(out, data, model, train, s, device, progress)
        atomic_write_json(result.to_json(), out / CompareResult.FILE)
        write_compare_report(out, result)
    return result


def _compare(out: Path, data: DataSpec, model: dict, train: TrainConfig, s: CompareSettings, device: str,
             progress: bool) -> CompareResult:
    start, rows = time.perf_counter(), []
    for config in configurations(s, train):
        runs, names = [], []
        for seed in s.seeds:
            folder = out / config.folder / f"seed{seed}"
            cfg = dataclasses.replace(train, seed=seed, l1_lambda=config.l1_lambda, train_noise=config.train_noise)
            _train(folder, data, {**model, "head": config.head}, cfg, progress)
            run = Run.open(folder)
            names.append(run.network_name(out))
            runs.append(measure(run, s, device, progress, names[-1]))
        rows.append({"name": config.name, "head": config.head, "l1_lambda": config.l1_lambda,
                     "train_noise": config.train_noise, "seeds": list(s.seeds),
                     "runs": [str(out / config.folder / f"seed{seed}") for seed in s.seeds], "networks": names,
                     "metrics": {k: seed_interval([r.get(k) for r in runs], metric_bounds(k)) for k in runs[0]}})
    return CompareResult(configs=rows, settings={
        "data": data.to_dict(), "model": model, "train": train.to_dict(), "seeds": list(s.seeds),
        "noise_stds": s.noise_stds, "prune_fraction": s.prune_fraction,
        "scoring": dataclasses.asdict(s.scoring), "interval": "95% Student-t over seeds"},
        seconds={"total": time.perf_counter() - start})


def metric_bounds(metric: str) -> tuple[float, float]:
    """The range a metric of :func:`measure` lies in, to which its interval over seeds is clipped:
    rank scores and differences of shares in [-1, 1], shares and accuracies in [0, 1]."""
    signed = metric.endswith("_score") or "_score_" in metric or metric.startswith(("semantic_minus", "consistency_minus"))
    return (-1.0, 1.0) if signed else (0.0, 1.0)


def _train(folder: Path, data: DataSpec, model: dict, cfg: TrainConfig, progress: bool) -> None:
    """Train the run unless it is finished (a killed one is resumed); a run already there must have
    been trained with this comparison's settings."""
    finished, killed = (folder / MODEL_FILE).is_file(), (folder / CHECKPOINT).is_file()
    if finished or killed:
        _check_same_settings(Run.open(folder), data, model, cfg)
    if finished:
        return
    train_run(folder, data, model, cfg, resume=killed, progress=progress)


def _check_same_settings(run: Run, data: DataSpec, model: dict, cfg: TrainConfig) -> None:
    """Refuse to reuse (or resume) a run trained with other settings than the comparison asks for:
    its numbers would silently stand for another configuration."""
    stored_model = run.model_config
    asked = {"data": data.to_dict(), "train": cfg.to_dict(),
             "model": type(stored_model)(attribute_names=stored_model.attribute_names, **model).to_dict()}
    differ = run.setting_differences(asked, "this comparison")
    if differ:
        raise HPNetError(f"{run.path}: holds a run trained with other settings: {', '.join(differ)}; "
                         f"use another --out, or delete that run to train it again")


def measure(run: Run, settings: CompareSettings, device: str = "auto", progress: bool = False,
            name: str | None = None) -> dict:
    """Every metric of one trained run (numbers, None where a network has no such thing); ``name``
    is the network's name in results (default ``run.network_name()``)."""
    s = settings
    model = run.model(device)
    split, test = run.eval_data(progress=progress)
    evaluation = run.read(EvaluationResult, split=split) or evaluate_run(run, progress=progress)
    views = run.view_data(split, progress)[1]
    train = run.split("train", progress)
    scores = score_network(model, test, views, s.scoring, name or run.network_name(), progress)
    loc = scores["localisation"]
    metrics = {"accuracy": evaluation.mean_accuracy, "majority_baseline": evaluation.mean_majority_baseline}
    for op in s.scoring.families():
        entry = scores["operations"].get(op.name) or {}
        metrics[f"{op.name}_score"] = entry.get("score")
        if op.shared_predictor:
            metrics[f"{op.name}_score_{op.shared_predictor}"] = (entry.get("variants") or {}).get(
                op.shared_predictor, {}).get("score")
    metrics.update(_roles(scores["roles"]))
    metrics.update({
        "localisation_masks": (loc.get("attention") or {}).get("score"),
        "localisation_pooled": (loc.get("pooled") or {}).get("score"),
        "localisation_gradcam": (loc.get("gradcam") or {}).get("score"),
        "localisation_saliency": (loc.get("saliency") or {}).get("score"),
        "localisation_chance": (loc.get("chance") or {}).get("score"),
        "mask_mean": (run.record.get("masks") or {}).get("mean"),
        "mask_sparsity": (run.record.get("masks") or {}).get("sparsity"),
    })
    metrics.update(_pruning(model, train, test, s))
    metrics.update(_noise(model, test, views, s, progress))
    return metrics


def _roles(roles: dict) -> dict:
    """The share of channels with a face part, and the semantic consistency of the roles against
    its random-assignment chance (None without face parts)."""
    score, chance = roles.get("score"), roles.get("chance")
    return {"roles_share": roles.get("roles_share"), "consistency": score, "consistency_chance": chance,
            "consistency_minus_chance": None if score is None or chance is None else score - chance}


def _pruning(model: HPNet, train, test, s: CompareSettings) -> dict:
    """Semantic minus random (mean of 5 orders) at ``prune_fraction`` of the channels pruned."""
    P = int(round(model.config.channels * s.prune_fraction))
    settings = PruneSettings(methods=["semantic", "random"], scan=ScanSettings(corr_images=1000),
                             curves=CurveSettings(grid=[0, P], fit_images=500))
    result = prune_model(model, train, test, settings).result

    def gap(methods: dict) -> float:
        at = {name: next(row[1] for row in curve if row[0] == P) for name, curve in methods.items()}
        return at["semantic"] - at["random"]
    return {"semantic_minus_random": gap(result.methods),
            "semantic_minus_random_plain": gap(result.methods_heads_unchanged or result.methods)}


def _noise(model: HPNet, test, valid, s: CompareSettings, progress: bool) -> dict:
    """Accuracy at each noise std: the network as it is, and with the per-attribute tone curve chosen
    on validation images at that std (networks with masks)."""
    identity = robustness_sweep(model, test, (1.0,), (0.0,), s.noise_stds, progress=progress)["results"]
    out = {f"noise_{r['noise_std']:g}": r["accuracy"] for r in identity}
    for std in s.noise_stds:
        chosen = None
        if model.has_masks and std > 0:
            with model.perturbed():             # select_transform sets its choice on the model: put it back
                chosen = select_transform(model, valid, test, std, progress=progress)["test"]["accuracy_selected"]
        out[f"noise_{std:g}_tone_curve"] = chosen
    return out
