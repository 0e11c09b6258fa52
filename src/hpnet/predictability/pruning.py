"""Predictability of channel pruning: a person's predicted change against the measured one.

The human-side prediction of pruning the channels S from attribute k is the share of k's evidence
that S carries, read off what a person sees: for the attention network the mean-mask grid of
Fig. 5 times the head weights, ``p_kS = sum_{c in S} mbar_kc |w_kc| / sum_c mbar_kc |w_kc|``; for a
plain CNN (no masks) the head weight times the channel's mean activation. The measured change is
the mean |logit change| in units of the attribute's logit standard deviation (and the accuracy drop).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..analysis.masks import mean_mask_grid
from ..core.stats import predictability_score, within_attribute_score
from ..core.stream import inference, model_device, stream
from ..data.base import MultiLabelDataset
from ..errors import HPNetError
from ..model import HPNet
from .measure import measure_operations, per_std, rounded


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
    ``contributions`` (K, C): mean over images of |w_kc mean_hw(g(M_kc) z_c)|, each channel's
    share of each logit (for a plain CNN |w_kc| |GAP(z)_c|); ``mean_masks`` (K, C): the Fig. 5 grid
    (networks with masks only).
    """
    device = model_device(model)
    K, C = model.config.num_attributes, model.config.channels
    total, n = torch.zeros(C, dtype=torch.float64), 0
    contributions = torch.zeros(K, C, dtype=torch.float64)
    with inference(model):
        for x, _ in stream(data, batch_size, device, max_images, progress, "channel activations"):
            z, context = model.encode(x)
            total += z.mean(dim=(2, 3)).abs().sum(0).double().cpu()
            contributions += (model.heads.pooled(z, context) * model.heads.weight).abs().sum(0).double().cpu()
            n += x.shape[0]
    out = {"activation": total / max(n, 1), "weights": model.heads.weight.detach().double().cpu(),
           "contributions": contributions / max(n, 1)}
    if model.has_masks:
        out["mean_masks"] = mean_mask_grid(model, data, batch_size, max_images, progress).double()
    return out


def pruning_predictors(usage: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-channel evidence (K, C) of each human-side pruning predictor; the first one is primary.

    Networks with masks: "mask_x_weight" (mean mask x |w|, what Fig. 5 and the heads show), then
    "mask_x_weight_x_activation" and "weight". Plain CNN: "weight_x_activation", then "weight".
    Every network also gets "contribution", the same for all: each channel's mean |contribution|
    to the logit (for the plain CNN it equals "weight_x_activation").
    """
    w = usage["weights"].abs()
    a = usage["activation"].view(1, -1)
    if "mean_masks" in usage:
        m = usage["mean_masks"]
        out = {"mask_x_weight": m * w, "mask_x_weight_x_activation": m * w * a, "weight": w}
    else:
        out = {"weight_x_activation": w * a, "weight": w}
    if "contributions" in usage:
        out["contribution"] = usage["contributions"]
    return out


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
    ops = [(lambda z, context, k=k: model.heads(z * k, context)[0]) for k in masks]
    measured = measure_operations(model, data, ops, max_images, batch_size, progress)
    logit = per_std(measured["abs_change"], measured["logit_std"])       # (O, K)
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
                  data={"predicted": rounded(predicted[primary]), "logit": rounded(logit),
                        "accuracy": rounded(drop)})
    return result


def _keep_vector(pruned: Sequence[int], channels: int, device: torch.device) -> torch.Tensor:
    keep = torch.ones(channels, device=device)
    keep[list(pruned)] = 0.0
    return keep.view(1, channels, 1, 1)
