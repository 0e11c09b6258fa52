"""Correlations between the C feature channels (paper Fig. 3 step 2 and Fig. 6).

With the weights fixed, one streaming pass accumulates per-channel sums and the C x C matrix of
cross-products (float64, :class:`hpnet.core.moments.Moments`), from which the Pearson correlation R
follows. Memory is O(C^2) whatever the number of images. Two kinds of observation:

- :func:`channel_correlation`: the features z = f_f(x), one observation per (image, h, w) position
  (what the paper's Fig. 6 shows; where channels fire together);
- :func:`contribution_correlation`: each channel's contribution to each classifier's logit,
  w_kc * mean_hw(g(M^k_c) z_c), one observation per (image, attribute) (what channels do for the
  decisions; the semantic pruning scan uses it by default, see :mod:`hpnet.ops.pruning`).
"""
from __future__ import annotations

import torch

from ..core.moments import Moments
from ..core.stream import inference, model_device, stream
from ..data.base import MultiLabelDataset
from ..model import HPNet
from ..registry import Registry


def channel_correlation(model: HPNet, data: MultiLabelDataset, batch_size: int = 128,
                        max_images: int | None = None, progress: bool = False) -> torch.Tensor:
    """Pearson correlation (C, C), float64 on the CPU, between the channels of z = model.features(x).

    Every (image, h, w) position of the first ``max_images`` images (all by default) is one
    observation. The model's channel keep-mask applies, so pruned channels are constant zero.
    A channel with zero variance (pruned, or dead) has correlation 0 with every other channel and
    1 with itself, so that R stays a valid, NaN-free correlation matrix.
    """
    device = model_device(model)
    moments = Moments()
    with inference(model):
        for x, _ in stream(data, batch_size, device, max_images, progress, "correlation"):
            moments.add(model.features(x))
    if moments.n == 0:
        C = model.config.channels
        return torch.eye(C, dtype=torch.float64)
    return moments.correlation().cpu()


def contribution_correlation(model: HPNet, data: MultiLabelDataset, batch_size: int = 128,
                             max_images: int | None = None, progress: bool = False) -> torch.Tensor:
    """Pearson correlation (C, C), float64 on the CPU, between the channels' contributions to the logits.

    Channel c contributes ``w_kc * mean_hw(g(M^k_c) * z_c)`` to the logit of attribute k (the
    logit is their sum plus b_k); every (image, attribute) pair of the first ``max_images`` images
    is one observation. Two channels correlate here when they push the same decisions the same
    way on the same images. Constant channels (pruned, dead, or unread) are handled as in
    :func:`channel_correlation`. Linear heads work too (their pooled feature is GAP(z)).
    """
    device = model_device(model)
    moments = Moments()
    with inference(model):
        for x, _ in stream(data, batch_size, device, max_images, progress, "contribution correlation"):
            part = model.heads.pooled(*model.encode(x)) * model.heads.weight       # (B, K, C)
            moments.add(part.reshape(-1, part.shape[-1]))
    if moments.n == 0:
        return torch.eye(model.config.channels, dtype=torch.float64)
    return moments.correlation().cpu()


# what the semantic pruning scan may correlate (``hpnet prune --correlation``)
CORRELATIONS: Registry = Registry("--correlation")
CORRELATIONS.register("contributions")(contribution_correlation)
CORRELATIONS.register("features")(channel_correlation)
