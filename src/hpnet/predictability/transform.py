"""Predictability of the mask transformation g(M; n, beta): predicted against measured logit change.

The human-side prediction applies the tone curve to the mean masks of Fig. 5, weighted by the signed
head weights: ``p_kT = sum_c w_kc (g(mbar_kc) - mbar_kc) / sum_c |w_kc| mbar_kc``; the measured change
is the signed mean logit change in units of the logit standard deviation.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..core.stats import predictability_score, within_attribute_score
from ..core.tone import mask_transform
from ..data.base import MultiLabelDataset
from ..errors import HPNetError
from ..model import HPNet
from .measure import HeadsFn, measure_operations, per_std, rounded

TRANSFORMS = ((0.5, 0.0), (2.0, 0.0), (4.0, 0.0), (1.0, 0.2), (1.0, 0.5), (0.5, 0.5), (2.0, 0.5), (4.0, 0.5))


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
    logit = per_std(measured["mean_change"], measured["logit_std"])
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
                  data={"predicted": rounded(predicted), "logit": rounded(logit), "accuracy": rounded(change)})
    return result


def _transform_op(model: HPNet, n: float, beta: float) -> HeadsFn:
    K = model.config.num_attributes
    n_k, beta_k = torch.full((1, K), float(n)), torch.full((1, K), float(beta))

    def run(z: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        return model.heads.logits_under(z, n_k, beta_k, context)[0]
    return run
