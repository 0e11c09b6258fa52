"""Human predictability as a number: how well a person's prediction of an operation's effect matches it.

The paper defines the human predictability of a model-operation pair as how easily a person can
predict the change of the inference when the model is perturbed, but never measures it. Here:

1. A *human-side prediction* is computed only from what a person sees, one number per
   (attribute, operation) pair. For channel pruning on the attention network: the share of
   attribute k's evidence that the pruned channels S carry, read off the mean-mask grid of Fig. 5
   and the head weights, ``p_kS = sum_{c in S} mbar_kc |w_kc| / sum_c mbar_kc |w_kc|``. For the
   plain CNN (GAP + linear head, no masks) the best a person has is the head weight times the
   channel's mean activation, ``p_kS = sum_{c in S} |w_kc| a_c / sum_c |w_kc| a_c``. For the mask
   transformation g(M; n, beta): the direction the tone curve moves the mean masks, weighted by the
   signed head weights, ``p_kT = sum_c w_kc (g(mbar_kc) - mbar_kc) / sum_c |w_kc| mbar_kc``.
2. The *measured change* of the same pair after applying the operation, on evaluation images: the
   mean |logit change| of attribute k in units of the standard deviation of its logits (pruning),
   the signed mean logit change in the same units (transformation), and the change of accuracy.
3. The *score* is Spearman's rank correlation between predicted and measured change over all
   (attribute, operation) pairs (ties get average ranks), with a percentile bootstrap confidence
   interval over the pairs (:func:`predictability_score`). 1: a person ranks every effect right;
   0: the prediction says nothing; -1: exactly backwards. The primary measure is the logit change
   (exact on the images, where an accuracy change is a difference of few flipped decisions).

Further: :func:`localisation` measures on synthetic faces (which know where each attribute's
evidence lies) the share of an explanation map's energy inside the evidence region, for the
attention masks of each attribute's top channels and for post-hoc explainers (Grad-CAM on z,
saliency |d logit / d x|, patch permutation); the region's area share is the chance level.
:func:`regression_predictability` scores the paper's regression example (Eq. 3-7) the same way as a
calibration: orthogonal bases score 1, the naive polynomial less. :func:`predictability_run` does
all of it for a run folder, trains the plain-CNN baseline with the same budget, and writes
``RUN/predictability.json`` and figures; :func:`report_section` renders them as HTML.

Grad-CAM and saliency are written here (``backend="builtin"``, the default: one forward pass and
K backward passes per batch) and can also be computed through Captum (``backend="captum"``, or
``"auto"``: Captum when installed, ``pip install hpnet[explain]``), which runs a forward and a
backward pass of the whole network per attribute, about twice the time. The two agree to float
rounding; the test suite checks it. Patch permutation is always computed here: one forward pass
per patch gives every attribute, where Captum's FeaturePermutation would repeat it per attribute.
"""
from __future__ import annotations

import base64
import math
import time
import warnings
from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data import DataSpec, load_split, require_nonempty
from ..data.base import MultiLabelDataset
from ..errors import HPNetError
from ..io import atomic_write_json, read_json
from ..model import HPNet
from ..ops.transform import mask_transform
from .masks import mean_mask_grid
from .stream import correct_counts, image_count, inference, model_device, stream

RESULT_FILE = "predictability.json"
PLAIN_DIR = "plain"
TRANSFORMS = ((0.5, 0.0), (2.0, 0.0), (4.0, 0.0), (1.0, 0.2), (1.0, 0.5), (0.5, 0.5), (2.0, 0.5), (4.0, 0.5))
EXPLAINERS = ("gradcam", "saliency", "permutation")
FIGURES = {"pruning": "predictability_pruning.png", "transform": "predictability_transform.png",
           "localisation": "predictability_localisation.png"}


# ----------------------------------------------------------------------------------------------
# the score


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis; tied values share the mean of their ranks."""
    a = np.asarray(values, dtype=float)
    n = a.shape[-1]
    order = np.argsort(a, axis=-1, kind="stable")
    s = np.take_along_axis(a, order, axis=-1)
    idx = np.broadcast_to(np.arange(n), s.shape)
    starts = np.ones(s.shape, dtype=bool)
    starts[..., 1:] = s[..., 1:] != s[..., :-1]
    ends = np.ones(s.shape, dtype=bool)
    ends[..., :-1] = starts[..., 1:]
    first = np.maximum.accumulate(np.where(starts, idx, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, idx, n - 1), -1), axis=-1), -1)
    ranks = np.empty(s.shape)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=-1)
    return ranks


def spearman(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Spearman's rho along the last axis (Pearson r of average ranks); NaN where one side is constant."""
    ra, rb = average_ranks(predicted), average_ranks(measured)
    ra = ra - ra.mean(-1, keepdims=True)
    rb = rb - rb.mean(-1, keepdims=True)
    den = np.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def predictability_score(predicted, measured, n_boot: int = 1000, seed: int = 0,
                         level: float = 0.95) -> dict:
    """Human predictability of a model-operation pair: Spearman rho of predicted vs measured change.

    ``predicted`` and ``measured`` hold one number per (attribute, operation) pair, in any matching
    shape; pairs where either is NaN are left out. The confidence interval is the percentile
    bootstrap (``n_boot`` resamples of the pairs with replacement, seeded by ``seed``) at ``level``.
    Returns ``{"score", "ci_low", "ci_high", "n"}``; the score is NaN with fewer than 3 pairs or
    when either side is constant.
    """
    p = np.asarray(predicted, dtype=float).ravel()
    m = np.asarray(measured, dtype=float).ravel()
    if p.shape != m.shape:
        raise HPNetError(f"predicted and measured must have the same size, got {p.size} and {m.size}")
    keep = np.isfinite(p) & np.isfinite(m)
    p, m = p[keep], m[keep]
    n = int(p.size)
    if n < 3:
        return {"score": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": n}
    boots = _bootstrap(lambda idx: spearman(p[idx], m[idx]), n, n_boot, seed)
    low, high = _percentiles(boots, level)
    return {"score": float(spearman(p, m)), "ci_low": low, "ci_high": high, "n": n}


def within_attribute_score(predicted, measured, n_boot: int = 1000, seed: int = 0) -> dict:
    """Mean over attributes of Spearman's rho across operations, with a bootstrap interval over attributes.

    predicted, measured: (O, K). Unlike :func:`predictability_score` it ignores how the attributes
    compare with each other: can a person tell which operations change attribute k most?
    Attributes with a constant or non-finite column are left out.
    """
    p = np.asarray(predicted, dtype=float).T                             # (K, O)
    m = np.asarray(measured, dtype=float).T
    rho = spearman(p, m) if p.shape[-1] >= 3 else np.full(p.shape[0], np.nan)
    rho = np.where(np.isfinite(p).all(-1) & np.isfinite(m).all(-1), rho, np.nan)
    return mean_ci(rho, n_boot, seed)


def mean_ci(values, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean of ``values`` (NaN left out) with a percentile bootstrap interval: {"score", "ci_low", "ci_high", "n"}."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"score": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0}
    boots = _bootstrap(lambda idx: v[idx].mean(-1), v.size, n_boot, seed)
    low, high = _percentiles(boots, level)
    return {"score": float(v.mean()), "ci_low": low, "ci_high": high, "n": int(v.size)}


def _bootstrap(stat: Callable[[np.ndarray], np.ndarray], n: int, n_boot: int, seed: int,
               block_elements: int = 1 << 21) -> np.ndarray:
    """``stat`` of ``n_boot`` resamples of indices 0..n-1, evaluated in blocks of rows."""
    rng = np.random.default_rng(seed)
    rows = max(1, block_elements // max(n, 1))
    out = [stat(rng.integers(0, n, size=(min(rows, n_boot - i), n))) for i in range(0, n_boot, rows)]
    return np.concatenate(out) if out else np.zeros(0)


def _percentiles(boots: np.ndarray, level: float) -> tuple[float, float]:
    boots = boots[np.isfinite(boots)]
    if boots.size == 0:
        return math.nan, math.nan
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(boots, [tail, 100.0 - tail])
    return float(low), float(high)


# ----------------------------------------------------------------------------------------------
# measuring operations: the extractor once per batch, the heads once per operation


HeadsFn = Callable[[torch.Tensor], torch.Tensor]   # z (B, C, H, W) -> logits (B, K)


@torch.no_grad()
def measure_operations(model: HPNet, data: MultiLabelDataset, operations: Sequence[HeadsFn],
                       max_images: int | None = 256, batch_size: int = 100,
                       progress: bool = False) -> dict[str, torch.Tensor]:
    """Logit and accuracy changes of each operation against the model as it is, per attribute.

    Each operation is a function of the features z giving the logits of the changed model.
    Returns float64 tensors: ``abs_change`` and ``mean_change`` (O, K), the mean |change| and mean
    signed change of the logits; ``logit_std`` (K,), the standard deviation of the unchanged logits;
    ``accuracy`` (O, K) and ``base_accuracy`` (K,).
    """
    O, K = len(operations), model.config.num_attributes
    abs_sum, signed_sum = torch.zeros(O, K, dtype=torch.float64), torch.zeros(O, K, dtype=torch.float64)
    correct, base_correct = torch.zeros(O, K, dtype=torch.float64), torch.zeros(K, dtype=torch.float64)
    base_logits = []
    with inference(model):
        for x, y in stream(data, batch_size, model_device(model), max_images, progress, "operations"):
            z = model.features(x)
            base = model.heads(z)[0].float()
            base_logits.append(base.double().cpu())
            base_correct += correct_counts(base, y)
            for o, op in enumerate(operations):
                logits = op(z).float()
                diff = (logits - base).double().cpu()
                abs_sum[o] += diff.abs().sum(0)
                signed_sum[o] += diff.sum(0)
                correct[o] += correct_counts(logits, y)
    n = max(image_count(data, max_images), 1)
    logits = torch.cat(base_logits) if base_logits else torch.zeros(0, K, dtype=torch.float64)
    std = logits.std(0) if logits.shape[0] > 1 else torch.ones(K, dtype=torch.float64)
    return {"abs_change": abs_sum / n, "mean_change": signed_sum / n, "logit_std": std,
            "accuracy": correct / n, "base_accuracy": base_correct / n}


def _per_std(change: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Logit change in units of each attribute's logit standard deviation (NaN where it is 0)."""
    return change / torch.where(std > 0, std, torch.full_like(std, math.nan))


# ----------------------------------------------------------------------------------------------
# channel pruning


def pruning_operations(channels: int, groups: int = 16, group_size: int | None = None,
                       singles: int | None = 32, seed: int = 0) -> list[dict]:
    """The pruning operations scored: random groups of ``group_size`` (default C/8) channels and
    single channels (every channel when C <= ``singles``, else ``singles`` random ones).

    The same operations are used for every network, chosen without looking at any of them.
    Returns ``[{"kind": "group" | "single", "channels": [ids]}, ...]``.
    """
    gen = torch.Generator().manual_seed(int(seed))
    size = max(1, channels // 8) if group_size is None else int(group_size)
    if not 1 <= size <= channels:
        raise HPNetError(f"pruning group size must be in 1..{channels}, got {size}")
    ops = [{"kind": "group", "channels": sorted(torch.randperm(channels, generator=gen)[:size].tolist())}
           for _ in range(max(0, groups))]
    n_single = channels if singles is None or singles >= channels else max(0, int(singles))
    single_ids = range(channels) if n_single == channels else \
        sorted(torch.randperm(channels, generator=gen)[:n_single].tolist())
    return ops + [{"kind": "single", "channels": [int(c)]} for c in single_ids]


def channel_usage(model: HPNet, data: MultiLabelDataset, max_images: int | None = 256,
                  batch_size: int = 100, progress: bool = False) -> dict[str, torch.Tensor]:
    """What a person can see about each channel, from images other than the evaluation images.

    ``activation`` (C,): mean over images of |GAP(z)_c|; ``weights`` (K, C): the head weights w_k;
    ``mean_masks`` (K, C): the Fig. 5 grid (attention networks only).
    """
    device = model_device(model)
    total, n = torch.zeros(model.config.channels, dtype=torch.float64), 0
    with inference(model):
        for x, _ in stream(data, batch_size, device, max_images, progress, "channel activations"):
            total += model.features(x).mean(dim=(2, 3)).abs().sum(0).double().cpu()
            n += x.shape[0]
    out = {"activation": total / max(n, 1), "weights": model.heads.weight.detach().double().cpu()}
    if model.has_masks:
        out["mean_masks"] = mean_mask_grid(model, data, batch_size, max_images, progress).double()
    return out


def pruning_predictors(usage: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-channel evidence (K, C) of each human-side pruning predictor; the first one is primary.

    Attention network: "mask_x_weight" (mean mask x |w|, what Fig. 5 and the heads show), then
    "mask_x_weight_x_activation" and "weight". Plain CNN: "weight_x_activation", then "weight".
    """
    w = usage["weights"].abs()
    a = usage["activation"].view(1, -1)
    if "mean_masks" in usage:
        m = usage["mean_masks"]
        return {"mask_x_weight": m * w, "mask_x_weight_x_activation": m * w * a, "weight": w}
    return {"weight_x_activation": w * a, "weight": w}


def predict_pruning(evidence: torch.Tensor, operations: Sequence[dict]) -> torch.Tensor:
    """Predicted change (O, K): the share of attribute k's evidence (K, C) on the pruned channels."""
    keep = _pruned_indicator(operations, evidence.shape[1]).double()     # (O, C), 1 = pruned
    total = evidence.sum(1)                                              # (K,)
    return (keep @ evidence.T) / torch.where(total > 0, total, torch.ones_like(total))


def _pruned_indicator(operations: Sequence[dict], channels: int) -> torch.Tensor:
    out = torch.zeros(len(operations), channels)
    for o, op in enumerate(operations):
        out[o, list(op["channels"])] = 1.0
    return out


def pruning_predictability(model: HPNet, data: MultiLabelDataset, usage: dict[str, torch.Tensor],
                           operations: Sequence[dict], max_images: int | None = 256, batch_size: int = 100,
                           n_boot: int = 1000, seed: int = 0, progress: bool = False) -> dict:
    """Predictability of channel pruning on ``model``: predicted vs measured change per attribute.

    ``usage`` comes from :func:`channel_usage` (images other than ``data``), ``operations`` from
    :func:`pruning_operations`. Measured on the first ``max_images`` images of ``data``: the mean
    |logit change| in units of the logit standard deviation (primary) and the accuracy drop.
    Returns ``{"score", "ci_low", "ci_high", "n", "predictor", "measure": "logit", "accuracy":
    {score...}, "within_attribute": {score...}, "variants": {predictor: {score...}}, "base_accuracy",
    "data": {"predicted", "logit", "accuracy"}}`` with the per-operation data as (O, K) lists.
    """
    C = model.config.channels
    masks = [_keep_vector(op["channels"], C, model_device(model)) for op in operations]
    ops = [(lambda z, k=k: model.heads(z * k)[0]) for k in masks]
    measured = measure_operations(model, data, ops, max_images, batch_size, progress)
    logit = _per_std(measured["abs_change"], measured["logit_std"])       # (O, K)
    drop = measured["base_accuracy"].view(1, -1) - measured["accuracy"]    # (O, K)
    predictors = pruning_predictors(usage)
    predicted = {name: predict_pruning(ev, operations) for name, ev in predictors.items()}
    primary = next(iter(predictors))
    result = predictability_score(predicted[primary], logit, n_boot, seed)
    variants = {name: dict(result) if name == primary else predictability_score(p, logit, n_boot, seed)
                for name, p in predicted.items()}
    result.update(predictor=primary, measure="logit",
                  accuracy=predictability_score(predicted[primary], drop, n_boot, seed), variants=variants,
                  within_attribute=within_attribute_score(predicted[primary], logit, n_boot, seed),
                  base_accuracy=float(measured["base_accuracy"].mean()),
                  data={"predicted": _rounded(predicted[primary]), "logit": _rounded(logit),
                        "accuracy": _rounded(drop)})
    return result


def _keep_vector(pruned: Sequence[int], channels: int, device: torch.device) -> torch.Tensor:
    keep = torch.ones(channels, device=device)
    keep[list(pruned)] = 0.0
    return keep.view(1, channels, 1, 1)


# ----------------------------------------------------------------------------------------------
# the mask transformation


def predict_transform(weights: torch.Tensor, mean_masks: torch.Tensor,
                      transforms: Sequence[tuple[float, float]]) -> torch.Tensor:
    """Predicted signed logit change (T, K) of each (n, beta): the tone curve applied to the Fig. 5
    grid, ``sum_c w_kc (g(mbar_kc) - mbar_kc)``, over the attribute's evidence ``sum_c |w_kc| mbar_kc``."""
    w, m = weights.double(), mean_masks.double()
    scale = (w.abs() * m).sum(1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    rows = [(w * (mask_transform(m, float(n), float(b)) - m)).sum(1) / scale for n, b in transforms]
    return torch.stack(rows) if rows else torch.zeros(0, w.shape[0], dtype=torch.float64)


def transform_predictability(model: HPNet, data: MultiLabelDataset, usage: dict[str, torch.Tensor],
                             transforms: Sequence[tuple[float, float]] = TRANSFORMS,
                             max_images: int | None = 256, batch_size: int = 100, n_boot: int = 1000,
                             seed: int = 0, progress: bool = False) -> dict:
    """Predictability of the mask transformation g(M; n, beta), every attribute set to the same (n, beta).

    Measured against the identity: the signed mean logit change in units of the logit standard
    deviation (primary), and |accuracy change| against |prediction|. Layout as
    :func:`pruning_predictability`, with "transforms" listing the (n, beta) pairs.
    """
    if not model.has_masks:
        raise HPNetError("mask transformation needs attention heads; this model has linear heads")
    saved = (model.heads.transform_n.clone(), model.heads.transform_beta.clone())
    try:
        model.set_transform(1.0, 0.0)  # the baseline: no transformation
        ops = [_transform_op(model, n, b) for n, b in transforms]
        measured = measure_operations(model, data, ops, max_images, batch_size, progress)
    finally:
        model.set_transform(*saved)
    logit = _per_std(measured["mean_change"], measured["logit_std"])
    change = (measured["accuracy"] - measured["base_accuracy"].view(1, -1)).abs()
    predicted = predict_transform(usage["weights"], usage["mean_masks"], transforms)
    with_activation = predict_transform(usage["weights"] * usage["activation"].view(1, -1),
                                        usage["mean_masks"], transforms)
    result = predictability_score(predicted, logit, n_boot, seed)
    result.update(predictor="mask_x_weight", measure="signed logit",
                  accuracy=predictability_score(predicted.abs(), change, n_boot, seed),
                  within_attribute=within_attribute_score(predicted, logit, n_boot, seed),
                  variants={"mask_x_weight": dict(result),
                            "mask_x_weight_x_activation": predictability_score(with_activation, logit,
                                                                               n_boot, seed)},
                  transforms=[[float(n), float(b)] for n, b in transforms],
                  data={"predicted": _rounded(predicted), "logit": _rounded(logit), "accuracy": _rounded(change)})
    return result


def _transform_op(model: HPNet, n: float, beta: float) -> HeadsFn:
    K = model.config.num_attributes
    n_k, beta_k = torch.full((1, K), float(n)), torch.full((1, K), float(beta))

    def run(z: torch.Tensor) -> torch.Tensor:
        return model.heads.logits_under(z, n_k, beta_k)[0]
    return run


# ----------------------------------------------------------------------------------------------
# localisation on synthetic faces


def energy_fraction(maps: torch.Tensor, regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Share of each map's energy inside its region, and whether its maximum lies inside.

    maps (n, K, S, S) >= 0, regions bool (n, K, S, S). Returns (fraction, pointing), both (n, K)
    float64: NaN where the region is empty; a map with no energy counts as uniform (its fraction is
    the region's area share, its pointing hit the area share as an expectation).
    """
    maps = maps.double().clamp(min=0)
    inside = regions.double()
    area = inside.mean(dim=(2, 3))
    total = maps.sum(dim=(2, 3))
    frac = torch.where(total > 0, (maps * inside).sum(dim=(2, 3)) / total.clamp(min=1e-300), area)
    top = maps.flatten(2).argmax(-1, keepdim=True)
    hit = inside.flatten(2).gather(-1, top)[..., 0]
    hit = torch.where(total > 0, hit, area)
    empty = area == 0
    return frac.masked_fill(empty, math.nan), hit.masked_fill(empty, math.nan)


def _upsample(maps: torch.Tensor, size: int) -> torch.Tensor:
    """(n, K, h, w) -> (n, K, size, size), bilinear, as the masks are shown over the image."""
    if maps.shape[-1] == size and maps.shape[-2] == size:
        return maps
    return F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)


@torch.no_grad()
def attention_maps(model: HPNet, x: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """Sum of the masks of each attribute's top channels: (n, K, S, S); ``top`` (K, k) channel ids."""
    m = model.masks(model.features(x))                                    # (n, K, C, H, W)
    K = m.shape[1]
    idx = top.to(m.device).view(1, K, -1, 1, 1).expand(m.shape[0], K, top.shape[1], *m.shape[-2:])
    return _upsample(m.gather(2, idx).sum(2), x.shape[-1])


def gradcam_maps(model: HPNet, x: torch.Tensor, backend: str = "builtin") -> torch.Tensor:
    """Grad-CAM on the features z for every attribute: (n, K, S, S), ReLU(sum_c mean_hw(dlogit/dz_c) z_c)."""
    if backend == "captum":
        return _captum_maps(model, x, "gradcam")
    with torch.no_grad():
        z0 = model.features(x)
    z = z0.detach().requires_grad_(True)
    logits = model.heads(z)[0]
    maps = []
    for k in range(logits.shape[1]):
        (g,) = torch.autograd.grad(logits[:, k].sum(), z, retain_graph=k + 1 < logits.shape[1])
        maps.append(F.relu((g.mean(dim=(2, 3), keepdim=True) * z0).sum(1)))
    return _upsample(torch.stack(maps, 1).detach(), x.shape[-1])


def saliency_maps(model: HPNet, x: torch.Tensor, backend: str = "builtin") -> torch.Tensor:
    """Saliency (Simonyan et al.; paper Eq. 1): max over colours of |d logit_k / d x|, (n, K, S, S)."""
    if backend == "captum":
        return _captum_maps(model, x, "saliency")
    xg = x.detach().requires_grad_(True)
    logits = model(xg).logits
    maps = []
    for k in range(logits.shape[1]):
        (g,) = torch.autograd.grad(logits[:, k].sum(), xg, retain_graph=k + 1 < logits.shape[1])
        maps.append(g.abs().amax(1))
    return torch.stack(maps, 1).detach()


def _captum_maps(model: HPNet, x: torch.Tensor, method: str) -> torch.Tensor:
    """The same maps through Captum (LayerGradCam on the extractor output z; Saliency)."""
    from captum.attr import LayerAttribution, LayerGradCam, Saliency

    def forward(inp: torch.Tensor) -> torch.Tensor:
        return model(inp).logits

    maps = []
    for k in range(model.config.num_attributes):
        if method == "gradcam":
            a = LayerGradCam(forward, model.extractor).attribute(x, target=k, relu_attributions=True)
            maps.append(LayerAttribution.interpolate(a, (x.shape[-2], x.shape[-1]), "bilinear")[:, 0])
        else:
            maps.append(Saliency(forward).attribute(x, target=k, abs=True).amax(1))
    return torch.stack(maps, 1).detach()


@torch.no_grad()
def permutation_maps(model: HPNet, x: torch.Tensor, patch: int | None = None, seed: int = 0) -> torch.Tensor:
    """Patch permutation importance (Fisher et al. 2018, on image patches): (n, K, S, S).

    The image is cut into ``patch`` x ``patch`` squares (default S/8). For each square, every image
    gets that square from another image of the batch (a random cyclic permutation, no image keeps
    its own); the square's importance for attribute k of image i is |logit change|, spread over
    its pixels. One forward pass per square scores every attribute.
    """
    n, _, S, _ = x.shape
    if n < 2:
        raise HPNetError("patch permutation needs at least 2 images in a batch")
    patch = max(1, S // 8) if patch is None else int(patch)
    gen = torch.Generator().manual_seed(int(seed))
    base = model(x).logits
    out = torch.zeros(n, base.shape[1], S, S, device=x.device)
    for top in range(0, S, patch):
        for left in range(0, S, patch):
            perm = _cyclic_permutation(n, gen).to(x.device)
            xp = x.clone()
            xp[:, :, top:top + patch, left:left + patch] = x[perm][:, :, top:top + patch, left:left + patch]
            change = (model(xp).logits - base).abs()                      # (n, K)
            out[:, :, top:top + patch, left:left + patch] = change[:, :, None, None]
    return out


def _cyclic_permutation(n: int, gen: torch.Generator) -> torch.Tensor:
    """A random permutation that is one n-cycle, so that no image is paired with itself."""
    order = torch.randperm(n, generator=gen)
    perm = torch.empty(n, dtype=torch.long)
    perm[order] = order.roll(-1)
    return perm


def captum_available() -> bool:
    try:
        import captum.attr  # noqa: F401
    except ImportError:
        return False
    return True


def _backend(backend: str) -> str:
    if backend not in ("auto", "captum", "builtin"):
        raise HPNetError(f"explainer backend must be auto, captum or builtin, got {backend!r}")
    if backend == "captum" and not captum_available():
        raise HPNetError("Captum is not installed: pip install 'hpnet[explain]', or use backend='builtin'")
    return ("captum" if captum_available() else "builtin") if backend == "auto" else backend


def localisation(model: HPNet, data: MultiLabelDataset, max_images: int = 64,
                 methods: Sequence[str] = ("attention",) + EXPLAINERS, top_k: int = 3,
                 mean_masks: torch.Tensor | None = None, patch: int | None = None, backend: str = "builtin",
                 batch_size: int = 32, n_boot: int = 1000, seed: int = 0) -> dict:
    """How much of each explanation lies where the attribute's evidence is (synthetic faces only).

    For each image and attribute, the share of the map's energy inside the attribute's evidence
    region (``data.region_masks``), averaged over attributes and images, with a bootstrap interval
    over images; "pointing" is the share of maps whose maximum lies inside. "attention" is the sum
    of the masks of the attribute's ``top_k`` channels by mean mask x |w_k| (Fig. 4's choice;
    ``mean_masks`` (K, C) defaults to the grid of these images). "chance" is the region's area share.
    Returns ``{method: {"score", "ci_low", "ci_high", "n", "pointing", "per_attribute"}, "chance":
    {...}, "images", "backend", "top_k", "patch"}``.
    """
    if not hasattr(data, "region_masks"):
        raise HPNetError("localisation needs evidence regions: only the synthetic data set has them")
    if "attention" in methods and not model.has_masks:
        raise HPNetError("this model has linear heads (plain CNN): it has no attention masks to localise")
    backend = _backend(backend)
    n = min(int(max_images), len(data))
    device = model_device(model)
    top = None
    if "attention" in methods:
        from .attention import top_channels
        grid = mean_masks if mean_masks is not None else mean_mask_grid(model, data, batch_size, n)
        top = top_channels(grid, model.heads.weight.detach().cpu(), top_k)
    fracs: dict[str, list] = {m: [] for m in methods}
    hits: dict[str, list] = {m: [] for m in methods}
    areas = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(start + batch_size, n))
            x = data.images[idx].to(device).float() / 255.0
            regions = data.region_masks(idx).to(device)
            areas.append(regions.double().mean(dim=(2, 3)).cpu())
            for m in methods:
                maps = _maps(model, x, m, top, patch, backend, seed + start)
                f, h = energy_fraction(maps, regions)
                fracs[m].append(f.cpu())
                hits[m].append(h.cpu())
    finally:
        model.train(was_training)
    area = torch.cat(areas)
    area = area.masked_fill(area == 0, math.nan)
    out = {m: _localisation_entry(torch.cat(fracs[m]), torch.cat(hits[m]), n_boot, seed) for m in methods}
    out["chance"] = _localisation_entry(area, area, n_boot, seed)
    out.update(images=n, backend=backend, top_k=top_k, patch=patch or max(1, data.images.shape[-1] // 8),
               attributes=list(model.attribute_names))
    return out


def _maps(model: HPNet, x: torch.Tensor, method: str, top: torch.Tensor | None, patch: int | None,
          backend: str, seed: int) -> torch.Tensor:
    if method == "attention":
        return attention_maps(model, x, top)
    if method == "gradcam":
        return gradcam_maps(model, x, backend)
    if method == "saliency":
        return saliency_maps(model, x, backend)
    if method == "permutation":
        return permutation_maps(model, x, patch, seed)
    raise HPNetError(f"localisation method must be attention, {', '.join(EXPLAINERS)}; got {method!r}")


def _localisation_entry(frac: torch.Tensor, hit: torch.Tensor, n_boot: int, seed: int) -> dict:
    """Mean over attributes per image, then mean over images with a bootstrap interval over images."""
    with warnings.catch_warnings():  # an attribute whose region is always empty is NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        per_image = np.nanmean(frac.numpy(), axis=1) if frac.numel() else np.zeros(0)
        pointing = float(np.nanmean(hit.numpy())) if hit.numel() else math.nan
        per_attribute = np.nanmean(frac.numpy(), axis=0) if frac.numel() else np.zeros(0)
    entry = mean_ci(per_image, n_boot, seed)
    entry.update(pointing=pointing, per_attribute=_rounded(torch.from_numpy(per_attribute)))
    return entry


# ----------------------------------------------------------------------------------------------
# the regression example as calibration


def regression_predictability(n_coeffs: int = 9, deltas: Sequence[float] = (-0.5, 0.5), n_boot: int = 1000,
                              seed: int = 0) -> dict:
    """The same score on the paper's regression models (Eq. 3-7), as a calibration.

    Operation: change one coefficient a_i by delta (every i, every delta). Measured: the change of
    the curve in the orthonormal components of the same function space (normalised Legendre
    polynomials for the power basis). Human-side prediction: "that basis function alone", i.e.
    component i changes by delta * ||phi_i|| and no other. Orthogonal bases (Legendre, Fourier)
    score 1; the power basis, whose x^n spreads over several components, scores less. Both sides
    are rounded to 1e-6 of their largest value (the integration error is about 1e-9), so that
    equal changes, zeros above all, tie.
    Returns ``{basis: {"score", "ci_low", "ci_high", "n", "spread"}}``.
    """
    from .regression import BASES, components, gram_matrix, spread

    out = {}
    for basis in BASES:
        norms = np.sqrt(np.diag(gram_matrix(basis, n_coeffs)))
        measured, predicted = [], []
        for i in range(n_coeffs):
            for d in deltas:
                measured.append(components(basis, i, float(d), n_coeffs))
                predicted.append(np.where(np.arange(n_coeffs) == i, float(d) * norms[i], 0.0))
        out[basis] = predictability_score(_snap(predicted), _snap(measured), n_boot, seed)
        out[basis]["spread"] = spread(basis, n_coeffs)
    return out


def _snap(values) -> np.ndarray:
    """Values rounded to 1e-6 of the largest magnitude, so that numerically equal values tie."""
    a = np.asarray(values, dtype=float)
    scale = np.abs(a).max() if a.size else 0.0
    return np.round(a / scale, 6) * scale if scale > 0 else a


# ----------------------------------------------------------------------------------------------
# a run folder


def predictability_run(run_dir: str | Path, plain_run: str | Path | None = None, epochs: int | None = None,
                       max_images: int = 256, localisation_images: int = 32, usage_images: int = 256,
                       groups: int = 16, singles: int | None = 32,
                       transforms: Sequence[tuple[float, float]] = TRANSFORMS, n_boot: int = 1000, seed: int = 0,
                       backend: str = "builtin", batch_size: int = 128, device: str = "auto",
                       progress: bool = True) -> dict:
    """Human predictability of an attention run against a plain CNN; writes ``RUN/predictability.json``.

    ``plain_run``: a trained plain-CNN run on the same data. Without it the baseline is trained
    into ``RUN/plain/`` with ``hpnet.api.train_run`` (head "linear"; the run's data, backbone,
    widths and training settings; ``epochs`` overrides the run's epochs) and reused on later calls.
    Operations are measured on the first ``max_images`` evaluation images (test, or valid when
    test is empty); the human-side views (Fig. 5 grid, head weights, mean activations) come from
    the first ``usage_images`` validation images (training images when valid is the evaluation
    split); localisation uses the first ``localisation_images`` evaluation images (synthetic data
    only). Accuracies are over the whole evaluation split. Figures go to ``RUN/figures/``.
    ``backend`` picks the Grad-CAM and saliency implementation (see the module docstring).
    """
    run_dir, start = Path(run_dir), time.perf_counter()
    model, record, spec = _attention_run(run_dir, device)
    plain_dir = Path(plain_run) if plain_run else run_dir / PLAIN_DIR
    if plain_run is None:
        _train_plain(plain_dir, record, spec, epochs, progress)
    plain = _plain_model(plain_dir, model)
    train_s = time.perf_counter() - start
    split, data, views_split, views = _splits(spec, progress)
    nets = {"attention": model, "plain": plain}
    dirs = {"attention": run_dir, "plain": plain_dir}
    accuracy = {k: _accuracy(dirs[k], net, data, split, record["train_positive_rate"]) for k, net in nets.items()}
    usage = {k: channel_usage(net, views, usage_images, batch_size, progress) for k, net in nets.items()}
    ops = pruning_operations(model.config.channels, groups, None, singles, seed)
    t = time.perf_counter()
    pruning = {k: pruning_predictability(net, data, usage[k], ops, max_images, batch_size, n_boot, seed, progress)
               for k, net in nets.items()}
    pruning.update(operations=ops, primary="logit")
    transform = {"attention": transform_predictability(model, data, usage["attention"], transforms, max_images,
                                                       batch_size, n_boot, seed, progress),
                 "plain": None, "note": "the plain CNN has no attention masks to transform"}
    ops_s, t = time.perf_counter() - t, time.perf_counter()
    loc = _run_localisation(nets, data, usage["attention"]["mean_masks"], localisation_images, backend, n_boot, seed)
    loc_s = time.perf_counter() - t
    regression = regression_predictability(n_boot=n_boot, seed=seed)
    settings = {"run": str(run_dir), "plain_run": str(plain_dir), "plain_trained_here": plain_run is None,
                "split": split, "images": image_count(data, max_images), "usage_split": views_split,
                "usage_images": image_count(views, usage_images), "localisation_images": loc.get("images"),
                "attributes": list(model.attribute_names), "channels": model.config.channels,
                "backbone": model.config.backbone, "groups": groups,
                "group_size": max(1, model.config.channels // 8),
                "singles": sum(op["kind"] == "single" for op in ops), "n_boot": n_boot, "ci_level": 0.95,
                "seed": seed}
    result = _json_ready({
        "pruning": pruning, "transform": transform, "localisation": loc,
        "regression": {b: r["score"] for b, r in regression.items()}, "regression_detail": regression,
        "accuracy": accuracy, "settings": settings, "definition": DEFINITION,
        "seconds": {"plain_training": train_s, "operations": ops_s, "localisation": loc_s,
                    "total": time.perf_counter() - start}})
    atomic_write_json(result, run_dir / RESULT_FILE)
    write_figures(run_dir, result)
    return result


DEFINITION = ("Human predictability of a model-operation pair: Spearman rank correlation, over (attribute, "
              "operation) pairs, between the change a person predicts from what the model shows and the "
              "measured change of the inference after the operation; 95% percentile bootstrap interval "
              "over the pairs. 1 = every effect ranked right, 0 = no information, -1 = backwards.")


def _data_spec(record: dict, run_dir: Path) -> DataSpec:
    if not record.get("data"):
        raise HPNetError(f"{run_dir}/run.json records no data settings; cannot load its images")
    return DataSpec.from_dict(record["data"])


def _attention_run(run_dir: Path, device: str) -> tuple[HPNet, dict, DataSpec]:
    from ..train import load_run_model, read_run, resolve_device
    record = read_run(run_dir)
    model = load_run_model(run_dir)
    if not model.has_masks:
        raise HPNetError(f"{run_dir}: has linear heads; `hpnet predictability` scores an attention run "
                         f"against a plain CNN, so give it the attention run")
    return model.to(resolve_device(device)), record, _data_spec(record, run_dir)


def _plain_model(plain_dir: Path, model: HPNet) -> HPNet:
    from ..train import load_run_model
    plain = load_run_model(plain_dir).to(model_device(model))
    if plain.has_masks:
        raise HPNetError(f"{plain_dir}: the baseline must be a plain CNN (--head linear); it has attention heads")
    if plain.attribute_names != model.attribute_names:
        raise HPNetError(f"{plain_dir}: the baseline was trained on {plain.attribute_names}, "
                         f"the run on {model.attribute_names}")
    return plain


def _splits(spec: DataSpec, progress: bool) -> tuple[str, MultiLabelDataset, str, MultiLabelDataset]:
    """(evaluation split, its images, the split the human-side views come from, its images)."""
    test = load_split(spec, "test", progress)
    split, data = ("test", test) if len(test) else ("valid", load_split(spec, "valid", progress))
    data = require_nonempty(data, spec, split)
    views_split = "valid" if split == "test" else "train"
    views = load_split(spec, views_split, progress)
    if len(views) == 0:
        views_split, views = "train", load_split(spec, "train", progress)
    return split, data, views_split, require_nonempty(views, spec, views_split)


def _accuracy(run_dir: Path, model: HPNet, data: MultiLabelDataset, split: str, rates: list[float]) -> dict:
    """Mean and per-attribute accuracy on the whole split: RUN/eval_<split>.json when it is there."""
    from ..train import evaluate
    saved = run_dir / f"eval_{split}.json"
    table = read_json(saved) if saved.is_file() else None
    if table is None or table.get("images") != len(data):
        table = evaluate(model, data, rates, 256)
    return {"mean_accuracy": table["mean_accuracy"], "mean_majority_baseline": table["mean_majority_baseline"],
            "per_attribute": [r["accuracy"] for r in table["per_attribute"]], "split": split,
            "images": table["images"]}


def _train_plain(plain_dir: Path, record: dict, spec: DataSpec, epochs: int | None, progress: bool) -> None:
    """Train the plain-CNN baseline into ``plain_dir`` unless a finished one is there already."""
    from ..api import train_run
    from ..train import CHECKPOINT, TrainConfig
    if (plain_dir / "model.safetensors").is_file():
        return
    cfg = TrainConfig.from_dict(record["train"])
    cfg.epochs = int(epochs) if epochs is not None else cfg.epochs
    model = {k: v for k, v in record["model"].items() if k != "attribute_names"}
    model["head"] = "linear"
    train_run(plain_dir, spec, model, cfg, resume=(plain_dir / CHECKPOINT).is_file(), progress=progress)


def _run_localisation(nets: dict[str, HPNet], data: MultiLabelDataset, mean_masks: torch.Tensor,
                      images: int, backend: str, n_boot: int, seed: int) -> dict:
    """Localisation of the attention net (masks + explainers) and of the plain CNN (explainers)."""
    if not hasattr(data, "region_masks") or images <= 0:
        return {"skipped": "evidence regions are known only for the synthetic data set"}
    out = localisation(nets["attention"], data, images, ("attention",) + EXPLAINERS, mean_masks=mean_masks,
                       backend=backend, n_boot=n_boot, seed=seed)
    plain = localisation(nets["plain"], data, images, EXPLAINERS, backend=backend, n_boot=n_boot, seed=seed)
    out["plain"] = {m: plain[m] for m in EXPLAINERS}
    return out


def _rounded(t: torch.Tensor, digits: int = 5) -> list:
    """A tensor as nested lists of floats with ``digits`` significant digits (NaN kept)."""
    return [[float(f"{v:.{digits}g}") for v in row] for row in t.tolist()] if t.dim() == 2 else \
        [float(f"{v:.{digits}g}") for v in t.tolist()]


def _json_ready(obj):
    """NaN and infinities become None (JSON has no NaN); tuples become lists."""
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def format_summary(result: dict) -> str:
    """The headline numbers of predictability.json as text (what `hpnet predictability` prints)."""
    acc = result.get("accuracy") or {}
    lines = [f"{'network':<20}{'accuracy':>10}  {'pruning (logit) [95% CI]':<28}{'transformation [95% CI]':<28}"]
    for net, label in (("attention", "attention network"), ("plain", "plain CNN")):
        tr = (result.get("transform") or {}).get(net)
        lines.append(f"{label:<20}{_pct(acc.get(net, {}).get('mean_accuracy')):>10}  "
                     f"{_score_text(result['pruning'].get(net)):<28}{_score_text(tr) if tr else '-':<28}")
    loc = result.get("localisation") or {}
    if "chance" in loc:
        shares = ", ".join(f"{m} {_score_text(loc.get(m))}" for m in ("attention",) + EXPLAINERS + ("chance",))
        lines.append(f"localisation (energy share inside the evidence region): {shares}")
    lines.append("regression calibration: " + ", ".join(f"{b} {v:.3f}" for b, v in result["regression"].items()
                                                       if v is not None))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# figures and the report section


def write_figures(run_dir: str | Path, result: dict) -> dict[str, str]:
    """The scatter plots and localisation bars as PNG files in ``RUN/figures/``; returns {name: path}."""
    from ..report.figures import save_png
    out = Path(run_dir) / "figures"
    figs = {"pruning": fig_pruning(result), "transform": fig_transform(result),
            "localisation": fig_localisation(result)}
    return {name: str(save_png(fig, out / FIGURES[name])) for name, fig in figs.items() if fig is not None}


def _score_text(s: dict | None) -> str:
    if not s or s.get("score") is None:
        return "-"
    low, high = s.get("ci_low"), s.get("ci_high")
    ci = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
    return f"{s['score']:.3f}{ci}"


def fig_pruning(result: dict):
    """Predicted share of evidence pruned vs measured |logit change|, one panel per network."""
    from matplotlib.figure import Figure
    pruning = result["pruning"]
    kinds = np.array([op["kind"] for op in pruning["operations"]])
    fig = Figure(figsize=(10.0, 4.3), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, name in zip(axes, ("attention", "plain")):
        entry = pruning[name]
        p, m = (np.asarray(entry["data"][key], dtype=float) for key in ("predicted", "logit"))
        floor = 1e-4 * max(np.nanmax(p), 1e-12), 1e-4 * max(np.nanmax(m), 1e-12)
        for kind, colour in (("single", "C0"), ("group", "C3")):
            sel = kinds == kind
            ax.scatter(np.maximum(p[sel].ravel(), floor[0]), np.maximum(m[sel].ravel(), floor[1]), s=6,
                       alpha=0.45, color=colour, label=f"{kind} channel{'s' if kind == 'group' else ''}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"predicted: share of the attribute's evidence pruned ({entry['predictor']})", fontsize=8.5)
        ax.set_ylabel("measured: mean |logit change| / logit std", fontsize=8.5)
        label = "attention network" if name == "attention" else "plain CNN"
        ax.set_title(f"{label}: Spearman {_score_text(entry)}", fontsize=9.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Pruning predictability: each point is one (attribute, pruning operation) pair", fontsize=10)
    return fig


def fig_transform(result: dict):
    """Predicted vs measured signed logit change of the mask transformation, one colour per (n, beta)."""
    from matplotlib.figure import Figure
    entry = (result.get("transform") or {}).get("attention")
    if not entry:
        return None
    p, m = (np.asarray(entry["data"][key], dtype=float) for key in ("predicted", "logit"))
    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    ax = fig.subplots()
    for t, (n, b) in enumerate(entry["transforms"]):
        ax.scatter(p[t], m[t], s=10, alpha=0.7, color=f"C{t % 10}", marker="os^D"[t // 10 % 4],
                   label=f"n={n:g}, beta={b:g}")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_xlabel("predicted: sum_c w_kc (g(mean mask) - mean mask), per attribute evidence", fontsize=8.5)
    ax.set_ylabel("measured: mean logit change / logit std", fontsize=8.5)
    ax.set_title(f"Mask transformation predictability (attention network): Spearman {_score_text(entry)}",
                 fontsize=9.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def fig_localisation(result: dict):
    """Share of each explanation's energy inside the evidence region, with 95% intervals and chance."""
    from matplotlib.figure import Figure
    loc = result.get("localisation") or {}
    if "chance" not in loc:
        return None
    methods = ["attention"] + list(EXPLAINERS)
    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    ax = fig.subplots()
    width, top = 0.38, loc["chance"]["score"]
    for j, (net, entries) in enumerate((("attention network", loc), ("plain CNN", loc.get("plain") or {}))):
        xs = [i + (j - 0.5) * width for i, m in enumerate(methods) if entries.get(m)]
        vals = [entries[m] for m in methods if entries.get(m)]
        heights = np.array([v["score"] if v["score"] is not None else np.nan for v in vals])
        err = np.array([[h - (v["ci_low"] if v["ci_low"] is not None else h) for h, v in zip(heights, vals)],
                        [(v["ci_high"] if v["ci_high"] is not None else h) - h for h, v in zip(heights, vals)]])
        ax.bar(xs, heights, width, yerr=err, capsize=3, color=f"C{j}", label=net)
        top = max([top] + [v["ci_high"] for v in vals if v["ci_high"] is not None])
    ax.axhline(loc["chance"]["score"], color="0.2", ls="--", lw=1.2, label="chance (region area share)")
    ax.set_xticks(range(len(methods)), ["attention masks\n(top channels)", "Grad-CAM (z)", "saliency",
                                        "patch permutation"], fontsize=8.5)
    ax.set_ylabel("energy share inside the evidence region")
    ax.set_ylim(0, min(1.0, 1.3 * top))
    ax.set_title(f"Localisation on {loc.get('images', '?')} synthetic faces", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return fig


def report_section(run_dir: str | Path) -> str:
    """The report's "Human predictability" section (HTML) from ``RUN/predictability.json`` and figures."""
    run_dir = Path(run_dir)
    path = run_dir / RESULT_FILE
    if not path.is_file():
        return (f'<p class="note"><code>{RESULT_FILE}</code> is not in the run folder yet: run '
                f'<code>hpnet predictability {escape(str(run_dir))}</code> to make it.</p>')
    result = read_json(path)
    parts = [f"<p>{escape(result.get('definition', DEFINITION))}</p>", _networks_table(result),
             _image(run_dir, result, "pruning", fig_pruning), _variants_table(result),
             _image(run_dir, result, "transform", fig_transform), _localisation_html(run_dir, result),
             _regression_table(result), _settings_note(result)]
    return "".join(p for p in parts if p)


def _html_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * float(v):.2f}%"


def _networks_table(result: dict) -> str:
    rows = []
    for name, label in (("attention", "attention network (the paper's)"), ("plain", "plain CNN (GAP + linear)")):
        pr = result["pruning"].get(name) or {}
        tr = (result.get("transform") or {}).get(name)
        acc = (result.get("accuracy") or {}).get(name) or {}
        rows.append((label, _pct(acc.get("mean_accuracy")), _score_text(pr), _score_text(pr.get("accuracy")),
                     _score_text(pr.get("within_attribute")), _score_text(tr) if tr else "- (no masks)",
                     pr.get("predictor", "-")))
    return ("<h3>Accuracy and predictability side by side</h3>"
            + _html_table(["network", "mean accuracy", "pruning score (logit) [95% CI]",
                           "pruning score (accuracy) [95% CI]", "pruning, within attribute [95% CI]",
                           "transformation score (logit) [95% CI]", "human-side predictor"], rows)
            + '<p class="muted">Score: Spearman rho over (attribute, operation) pairs, primary measure the '
              'mean |logit change| in units of the attribute\'s logit standard deviation. Within attribute: '
              'rho across operations for each attribute, averaged (interval over attributes).</p>')


def _variants_table(result: dict) -> str:
    rows = [(net, name, _score_text(s)) for net in ("attention", "plain")
            for name, s in (result["pruning"].get(net) or {}).get("variants", {}).items()]
    return ('<p class="muted">Pruning score of other human-side predictors (same operations, logit change):</p>'
            + _html_table(["network", "predictor", "score [95% CI]"], rows))


def _localisation_html(run_dir: Path, result: dict) -> str:
    loc = result.get("localisation") or {}
    if "chance" not in loc:
        return f'<p class="muted">Localisation: {escape(str(loc.get("skipped", "not measured")))}.</p>'
    plain = loc.get("plain") or {}
    rows = []
    for m, label in (("attention", "attention masks (top channels)"), ("gradcam", "Grad-CAM on z"),
                     ("saliency", "saliency |d logit / d x|"), ("permutation", "patch permutation")):
        a, p = loc.get(m), plain.get(m)
        rows.append((label, _score_text(a), _score_text(p), _num(a, "pointing"), _num(p, "pointing")))
    rows.append(("chance (area share)", _score_text(loc["chance"]), _score_text(loc["chance"]),
                 _num(loc["chance"], "pointing"), _num(loc["chance"], "pointing")))
    return ("<h3>Localisation on synthetic faces</h3>"
            + f'<p class="muted">Share of each map\'s energy inside the attribute\'s evidence region, '
              f'mean over {loc.get("images")} images and all attributes (95% CI over images); pointing: '
              f'share of maps whose maximum lies inside. Explainers: {escape(str(loc.get("backend")))}.</p>'
            + _html_table(["map", "attention network", "plain CNN", "pointing (attention net)",
                           "pointing (plain CNN)"], rows)
            + _image(run_dir, result, "localisation", fig_localisation))


def _num(entry: dict | None, key: str) -> str:
    return "-" if not entry or entry.get(key) is None else f"{entry[key]:.3f}"


def _regression_table(result: dict) -> str:
    detail = result.get("regression_detail") or {}
    rows = [(b, _score_text(d), f"{d.get('spread', 0):.3f}") for b, d in detail.items()]
    return ("<h3>Calibration: the regression example (Eq. 3-7)</h3><p class=\"muted\">Change one coefficient; "
            "predict the change as that basis function alone in orthonormal components.</p>"
            + _html_table(["basis", "score [95% CI]", "spread"], rows))


def _settings_note(result: dict) -> str:
    s = result.get("settings") or {}
    secs = result.get("seconds") or {}
    return (f'<p class="muted">{s.get("images")} {escape(str(s.get("split")))} images; '
            f'{s.get("groups")} random groups of {s.get("group_size")} channels and {s.get("singles")} single '
            f'channels pruned; human-side views from {s.get("usage_images")} {escape(str(s.get("usage_split")))} images; '
            f'{s.get("n_boot")} bootstrap resamples; {secs.get("total", 0):.0f} s.</p>')


def _image(run_dir: Path, result: dict, name: str, make) -> str:
    """The figure's PNG from RUN/figures/ when present, else drawn from the JSON."""
    png = run_dir / "figures" / FIGURES[name]
    if png.is_file():
        data = base64.b64encode(png.read_bytes()).decode("ascii")
    else:
        fig = make(result)
        if fig is None:
            return ""
        from ..report.figures import png_base64
        data = png_base64(fig)
    return f'<img src="data:image/png;base64,{data}" alt="{escape(name)} predictability">'
