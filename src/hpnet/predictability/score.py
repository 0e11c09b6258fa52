"""Human predictability of networks under every registered operation, by one pipeline.

For every (attribute, operation) pair the operation's formula predicts the change from what a person
is shown (:mod:`hpnet.operations`), and the change is measured after applying the operation; the
score is Spearman's rank correlation between the two with a bootstrap interval
(:mod:`hpnet.core.stats`). :func:`score_network` scores one network on every operation that applies
to it (with localisation on synthetic faces, and the semantic consistency of its channels' roles on
faces whose parts are known); :func:`score_networks` scores several on the same
operations and adds the regression example as a calibration (:mod:`.calibration`).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .. import checks
from ..analysis.dissect import NONE, evidence_of
from ..analysis.roles import consistency
from ..core.stats import predictability_score, within_attribute_score
from ..core.stream import image_count
from ..data.base import MultiLabelDataset
from ..errors import HPNetError
from ..model import HPNet
from ..operations import OPERATIONS, TRANSFORMS, Operation, View, measure_operations, per_std, read_view, rounded
from ..results import PredictabilityResult
from .calibration import regression_predictability
from .explainers import BACKENDS
from .localisation import METHODS, localisation

DEFINITION = ("Human predictability of a model-operation pair: Spearman rank correlation, over (attribute, "
              "operation) pairs, between the change a person predicts from what the model shows and the "
              "measured change of the inference after the operation; 95% percentile bootstrap interval "
              "over the pairs. 1 = every effect ranked right, 0 = no information, -1 = backwards.")
MEASURES = {"size": "logit", "change": "signed logit"}


@dataclass
class PredictabilitySettings:
    """What ``hpnet predictability`` does (defaults are the command line's).

    ``operations``: the registered operations scored (default: all). ``plain_run``: a trained
    plain-CNN run on the same data (default: train one into RUN/plain with the run's settings,
    ``epochs`` overriding its epochs). Operations are measured on the first ``max_images``
    evaluation images: channel sets of ``groups`` random groups of C/8 channels and ``singles``
    single channels, and the tone curves ``transforms`` (n, beta); the human-side views come from
    the first ``usage_images`` images of another split; localisation from the first
    ``localisation_images`` evaluation images (synthetic faces only); ``n_boot`` bootstrap
    resamples seeded by ``seed``; Grad-CAM and saliency from the ``backend``.
    """

    plain_run: str | None = field(default=None, metadata={
        "flag": "--plain",
        "help": "a trained plain-CNN run on the same data (default: train one into RUN/plain with the run's settings)"})
    epochs: int | None = field(default=None, metadata={
        "flag": "--epochs", "help": "epochs of the plain CNN (default: the run's)"})
    max_images: int = field(default=256, metadata={
        "flag": "--max-images", "help": "evaluate on at most N images (default {default})"})
    localisation_images: int = field(default=32, metadata={
        "flag": "--localisation-images", "help": "synthetic images for localisation"})
    usage_images: int = 256
    groups: int = 16
    singles: int | None = 32
    transforms: Sequence[tuple[float, float]] = TRANSFORMS
    n_boot: int = field(default=1000, metadata={"flag": "--boot", "help": "bootstrap resamples for the 95% intervals"})
    seed: int = 0
    backend: str = field(default="builtin", metadata={
        "flag": "--explainer", "choices": BACKENDS,
        "help": "Grad-CAM and saliency: written here, through Captum, or Captum when installed"})
    batch_size: int = 128
    operations: Sequence[str] | None = field(default=None, metadata={
        "flag": "--operations", "choices": OPERATIONS,
        "help": "the operations scored, comma separated (default all: {choices})"})

    def __post_init__(self) -> None:
        self.plain_run = checks.path(self.plain_run, "--plain", optional=True)
        checks.count(self.epochs, "--epochs", optional=True)
        checks.count(self.max_images, "--max-images")
        checks.count(self.localisation_images, "--localisation-images", smallest=0)
        checks.count(self.usage_images, "usage_images")
        checks.count(self.groups, "groups", smallest=0)
        checks.count(self.singles, "singles", smallest=0, optional=True)
        if self.groups == 0 and self.singles == 0:
            raise HPNetError("groups and singles are both 0: there would be no pruning operation to score")
        self.transforms = [(checks.number(n, "transforms: n", 0, low_open=True), checks.number(b, "transforms: beta", 0, 1))
                           for n, b in _pairs(self.transforms)]
        checks.count(self.n_boot, "--boot")
        checks.seed(self.seed, "seed")
        checks.choice(self.backend, "--explainer", BACKENDS)
        checks.count(self.batch_size, "batch_size")
        if self.operations is not None:
            self.operations = checks.names(self.operations, "--operations")
            for name in self.operations:
                checks.choice(name, "--operations", OPERATIONS.names())

    def families(self) -> list[Operation]:
        return [OPERATIONS.get(name) for name in (self.operations or OPERATIONS.names())]


def _pairs(transforms) -> list:
    items = list(transforms) if isinstance(transforms, (list, tuple)) else []
    if not items or not all(isinstance(t, (list, tuple)) and len(t) == 2 for t in items):
        raise HPNetError(f"transforms must be a non-empty list of (n, beta) pairs, got {transforms!r}")
    return items


def score_operations(model: HPNet, data: MultiLabelDataset, view: View, settings: PredictabilitySettings,
                     progress: bool = False) -> dict[str, dict]:
    """Every applicable operation's score on one network, measured in one pass over ``data``.

    Per operation: ``{"score", "ci_low", "ci_high", "n", "predictor", "measure", "accuracy",
    "within_attribute", "variants", "base_accuracy", "operations", "data": {"predicted", "logit",
    "accuracy"}}``, the per-operation data as (O, K) lists.
    """
    s = settings
    planned = {op.name: op.scored(view, s) for op in s.families() if op.applies_to(view)}
    families = [op for op in s.families() if planned.get(op.name)]
    fns = [op.heads(model, p) for op in families for p in planned[op.name]]
    measured = measure_operations(model, data, fns, s.max_images, s.batch_size, progress)
    out, start = {}, 0
    for op in families:
        rows = slice(start, start + len(planned[op.name]))
        start = rows.stop
        part = {k: v[rows] if v.dim() == 2 else v for k, v in measured.items()}
        out[op.name] = _score(op, planned[op.name], view, part, s)
    return out


def _score(op: Operation, params: list, view: View, measured: dict, s: PredictabilitySettings) -> dict:
    """One family's score from its measured changes: the formula's size against the mean |change|,
    or its signed change against the mean signed change (``op.score_on``)."""
    signed = op.score_on == "change"
    logit = per_std(measured["mean_change" if signed else "abs_change"], measured["logit_std"])     # (O, K)
    accuracy = measured["accuracy"] - measured["base_accuracy"].view(1, -1)
    accuracy = accuracy.abs() if signed else -accuracy

    def predicted(v: View) -> torch.Tensor:
        rows = [op.predict(v, p) for p in params]
        return torch.stack([r.change if signed else r.size for r in rows])
    views = op.predictors(view)
    primary = next(iter(views))
    p = predicted(views[primary])
    result = predictability_score(p, logit, s.n_boot, s.seed)
    variants = {name: dict(result) if name == primary else predictability_score(predicted(v), logit, s.n_boot, s.seed)
                for name, v in views.items()}
    result.update(predictor=primary, measure=MEASURES[op.score_on],
                  accuracy=predictability_score(p.abs() if signed else p, accuracy, s.n_boot, s.seed),
                  within_attribute=within_attribute_score(p, logit, s.n_boot, s.seed), variants=variants,
                  base_accuracy=float(measured["base_accuracy"].mean()),
                  operations=[op.to_json(x) for x in params],
                  data={"predicted": rounded(p), "logit": rounded(logit), "accuracy": rounded(accuracy)})
    return result


def score_network(model: HPNet, data: MultiLabelDataset, views: MultiLabelDataset,
                  settings: PredictabilitySettings | None = None, name: str = "network",
                  progress: bool = False) -> dict:
    """The predictability of one network of any head family: ``{"operations": {name: {score...}},
    "localisation": {...} or {"skipped"}, "roles": {...} or {"skipped"}}`` (:func:`role_consistency`).
    Operations are chosen from C and the seed alone, so networks of the same width are scored on the
    same operations."""
    s = settings or PredictabilitySettings()
    view = read_view(model, views, name, s.usage_images, s.batch_size, progress)
    scores = score_operations(model, data, view, s, progress)
    if hasattr(data, "region_masks") and s.localisation_images > 0:
        methods = tuple(m for m in METHODS if m != "attention" or model.has_masks)
        loc = localisation(model, data, s.localisation_images, methods,
                           mean_masks=view.seen if model.has_masks else None,
                           backend=s.backend, n_boot=s.n_boot, seed=s.seed)
    else:
        loc = {"skipped": "evidence regions are known only for the synthetic data set"}
    return {"operations": scores, "localisation": loc, "roles": role_consistency(model, view, s.n_boot, s.seed)}


def role_consistency(model: HPNet, view: View, n_perm: int = 1000, seed: int = 0) -> dict:
    """Semantic consistency of the channels' roles in ``view`` (read from images that say where face
    parts lie, as ``hpnet dissect`` names them): :func:`hpnet.analysis.roles.consistency` of the
    evidence |w_kc| x mean mask_kc (without masks |w_kc| x mean |GAP(z)_c|), plus ``roles_share``,
    the share of channels with a part. ``{"skipped": why}`` when the images have no parts."""
    if view.roles is None:
        return {"skipped": "the images do not say where face parts lie"}
    result = consistency(evidence_of(model, view.seen), view.roles, view.attributes, view.parts, n_perm, seed)
    result["roles_share"] = sum(r != NONE for r in view.roles) / max(1, len(view.roles))
    result["evidence"] = "|w_kc| x mean mask_kc" if model.has_masks else "|w_kc| x mean |GAP(z)_c|"
    return result


def score_networks(nets: dict[str, HPNet], data: MultiLabelDataset, views: MultiLabelDataset,
                   settings: PredictabilitySettings | None = None, progress: bool = False) -> PredictabilityResult:
    """Predictability of each network of ``nets`` (name -> model, the run's own first) on the same
    operations, in one result. ``data``: the evaluation images the operations are measured on;
    ``views``: other images, from which what a person sees is read. The result's ``accuracy`` and
    the run-level settings (run, splits) are the caller's to fill."""
    s = settings or PredictabilitySettings()
    first = next(iter(nets.values()))
    widths = {net.config.channels for net in nets.values()}
    if len(widths) > 1:
        raise HPNetError(f"the networks have different numbers of feature channels ({sorted(widths)}); "
                         f"the same channels are perturbed in each")
    start = time.perf_counter()
    scored = {name: score_network(net, data, views, s, name, progress) for name, net in nets.items()}
    seconds = time.perf_counter() - start
    operations = {op.name: {name: r["operations"][op.name] for name, r in scored.items() if op.name in r["operations"]}
                  for op in s.families()}
    regression = regression_predictability(n_boot=s.n_boot, seed=s.seed)
    C = first.config.channels
    recorded = {"images": image_count(data, s.max_images), "usage_images": image_count(views, s.usage_images),
                "localisation_images": next((r["localisation"].get("images") for r in scored.values()), None),
                "attributes": list(first.attribute_names), "channels": C, "backbone": first.config.backbone,
                "groups": s.groups, "group_size": max(1, C // 8), "singles": min(C, s.singles or C),
                "n_boot": s.n_boot, "ci_level": 0.95, "seed": s.seed}
    return PredictabilityResult(
        operations=operations, networks={name: {"head": net.config.head, "masks": net.has_masks}
                                         for name, net in nets.items()},
        localisation={name: r["localisation"] for name, r in scored.items()}, accuracy={},
        regression={b: r["score"] for b, r in regression.items()}, regression_detail=regression,
        settings=recorded, definition=DEFINITION, seconds={"operations": seconds})
