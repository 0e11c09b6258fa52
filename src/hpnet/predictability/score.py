"""Human predictability of an attention network against its plain-CNN baseline, in one result.

For every (attribute, operation) pair a human-side prediction of the change is computed only from
what a person sees, and the change is measured after applying the operation; the score is
Spearman's rank correlation between the two with a bootstrap interval (:mod:`hpnet.core.stats`).
:func:`score_networks` measures pruning (:mod:`.pruning`) on both networks, the mask transformation
(:mod:`.transform`) on the attention network, localisation (:mod:`.localisation`) on synthetic
faces, and the regression example as a calibration (:mod:`.calibration`).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import checks
from ..core.stream import image_count
from ..data.base import MultiLabelDataset
from ..errors import HPNetError
from ..model import HPNet
from ..results import PredictabilityResult
from .calibration import regression_predictability
from .explainers import BACKENDS, EXPLAINERS
from .localisation import localisation, network_localisation
from .pruning import channel_usage, pruning_operations, pruning_predictability
from .transform import TRANSFORMS, transform_predictability

DEFINITION = ("Human predictability of a model-operation pair: Spearman rank correlation, over (attribute, "
              "operation) pairs, between the change a person predicts from what the model shows and the "
              "measured change of the inference after the operation; 95% percentile bootstrap interval "
              "over the pairs. 1 = every effect ranked right, 0 = no information, -1 = backwards.")
NETWORKS = ("attention", "plain")


@dataclass
class PredictabilitySettings:
    """What ``hpnet predictability`` does (defaults are the command line's).

    ``plain_run``: a trained plain-CNN run on the same data (default: train one into RUN/plain with
    the run's settings, ``epochs`` overriding its epochs). Operations are measured on the first
    ``max_images`` evaluation images: ``groups`` random groups of C/8 channels and ``singles``
    single channels pruned, and the ``transforms`` (n, beta); the human-side views come from the
    first ``usage_images`` images of another split; localisation from the first
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
        checks.count(self.seed, "seed", smallest=0)
        checks.choice(self.backend, "--explainer", BACKENDS)
        checks.count(self.batch_size, "batch_size")


def _pairs(transforms) -> list:
    items = list(transforms) if isinstance(transforms, (list, tuple)) else []
    if not items or not all(isinstance(t, (list, tuple)) and len(t) == 2 for t in items):
        raise HPNetError(f"transforms must be a non-empty list of (n, beta) pairs, got {transforms!r}")
    return items


def score_networks(nets: dict[str, HPNet], data: MultiLabelDataset, views: MultiLabelDataset,
                   settings: PredictabilitySettings | None = None, progress: bool = False) -> PredictabilityResult:
    """Predictability of ``nets["attention"]`` and ``nets["plain"]`` on the same operations.

    ``data``: the evaluation images the operations are measured on; ``views``: other images, from
    which the human-side views (Fig. 5 grid, head weights, mean activations) are read. The result's
    ``accuracy`` and the run-level settings (run, splits) are the caller's to fill.
    """
    s = settings or PredictabilitySettings()
    model = nets["attention"]
    usage = {k: channel_usage(net, views, s.usage_images, s.batch_size, progress) for k, net in nets.items()}
    ops = pruning_operations(model.config.channels, s.groups, None, s.singles, s.seed)
    start = time.perf_counter()
    pruning = {k: pruning_predictability(net, data, usage[k], ops, s.max_images, s.batch_size, s.n_boot, s.seed,
                                         progress) for k, net in nets.items()}
    pruning.update(operations=ops, primary="logit")
    transform = {"attention": transform_predictability(model, data, usage["attention"], s.transforms, s.max_images,
                                                       s.batch_size, s.n_boot, s.seed, progress),
                 "plain": None, "note": "the plain CNN has no attention masks to transform"}
    ops_s, start = time.perf_counter() - start, time.perf_counter()
    loc = network_localisation(nets, data, usage["attention"]["mean_masks"], s.localisation_images, s.backend,
                               s.n_boot, s.seed)
    loc_s = time.perf_counter() - start
    regression = regression_predictability(n_boot=s.n_boot, seed=s.seed)
    C = model.config.channels
    recorded = {"images": image_count(data, s.max_images), "usage_images": image_count(views, s.usage_images),
                "localisation_images": loc.get("images"), "attributes": list(model.attribute_names),
                "channels": C, "backbone": model.config.backbone, "groups": s.groups, "group_size": max(1, C // 8),
                "singles": sum(op["kind"] == "single" for op in ops), "n_boot": s.n_boot, "ci_level": 0.95,
                "seed": s.seed}
    return PredictabilityResult(
        pruning=pruning, transform=transform, localisation=loc, accuracy={},
        regression={b: r["score"] for b, r in regression.items()}, regression_detail=regression,
        settings=recorded, definition=DEFINITION, seconds={"operations": ops_s, "localisation": loc_s})


def score_network(model: HPNet, data: MultiLabelDataset, views: MultiLabelDataset,
                  settings: PredictabilitySettings | None = None, progress: bool = False) -> dict:
    """The predictability of one network of any head family, by the same predictors and operations
    as :func:`score_networks` (operations chosen from C and the seed alone, so networks of the same
    width are scored on the same operations).

    Returns ``{"pruning": {score...}, "transform": {score...} or None (no masks), "localisation":
    {"attention" (masks only), "gradcam", "saliency", "permutation", "chance", ...} or {"skipped"}}``.
    """
    s = settings or PredictabilitySettings()
    usage = channel_usage(model, views, s.usage_images, s.batch_size, progress)
    ops = pruning_operations(model.config.channels, s.groups, None, s.singles, s.seed)
    pruning = pruning_predictability(model, data, usage, ops, s.max_images, s.batch_size, s.n_boot, s.seed, progress)
    transform = transform_predictability(model, data, usage, s.transforms, s.max_images, s.batch_size, s.n_boot,
                                         s.seed, progress) if model.has_masks else None
    if hasattr(data, "region_masks") and s.localisation_images > 0:
        methods = (("attention",) if model.has_masks else ()) + EXPLAINERS
        loc = localisation(model, data, s.localisation_images, methods, mean_masks=usage.get("mean_masks"),
                           backend=s.backend, n_boot=s.n_boot, seed=s.seed)
    else:
        loc = {"skipped": "evidence regions are known only for the synthetic data set"}
    return {"pruning": pruning, "transform": transform, "localisation": loc}
