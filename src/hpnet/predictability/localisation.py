"""Localisation on synthetic faces, which know where each attribute's evidence lies.

For each image and attribute: the share of an explanation map's energy inside the attribute's
evidence region, for the attention masks of the attribute's top channels ("attention"), for what
the classifier actually pools ("pooled", every head family) and for the post-hoc explainers; the
region's area share is the chance level.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from ..analysis.attention import top_channels
from ..analysis.masks import mean_mask_grid
from ..core.stats import mean_ci
from ..core.stream import model_device
from ..data.base import MultiLabelDataset
from ..errors import HPNetError
from ..model import HPNet
from .explainers import EXPLAINERS, gradcam_maps, permutation_maps, resolve_backend, saliency_maps, upsample
from ..operations import rounded

# the maps localisation measures: the masks of the top channels, what the classifier pools, the explainers
METHODS = ("attention", "pooled") + EXPLAINERS


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


@torch.no_grad()
def attention_maps(model: HPNet, x: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """Sum of the masks of each attribute's top channels: (n, K, S, S); ``top`` (K, k) channel ids."""
    z, context = model.encode(x)
    m = model.masks(z, context=context)                                   # (n, K, C, H, W)
    K = m.shape[1]
    idx = top.to(m.device).view(1, K, -1, 1, 1).expand(m.shape[0], K, top.shape[1], *m.shape[-2:])
    return upsample(m.gather(2, idx).sum(2), x.shape[-1])


@torch.no_grad()
def pooled_maps(model: HPNet, x: torch.Tensor, chunk_mb: int = 256) -> torch.Tensor:
    """What each classifier pools, position by position: (n, K, S, S).

    logit_k = b_k + mean_hw sum_c w_kc g(M_kc) z_c, so the map of attribute k is the size of its
    channels' terms at each position, sum_c |w_kc g(M_kc) z_c|, with g(M) the masks under the
    network's tone curve (``model.masks(z, transformed=True)``); without masks (linear head, plain
    CNN) g(M) = 1 and the map is sum_c |w_kc| |z_c| (CAM with |w|). Each term is taken by its size
    because a term that lowers the logit is evidence as much as one that raises it, and signed terms
    would cancel. Before upsampling, its mean over positions is at least |logit_k - b_k|, equal when
    every term has one sign. The masks are formed for slices of images of about ``chunk_mb`` MB.
    """
    z, context = model.encode(x)
    w = model.heads.weight.detach().abs().to(z.dtype)                                  # (K, C)
    if not model.has_masks:
        return upsample(torch.einsum("kc,bchw->bkhw", w, z.abs()), x.shape[-1])
    B, C, H, W = z.shape
    step = max(1, (chunk_mb << 20) // max(1, w.numel() * H * W * z.element_size()))
    maps = []
    for i in range(0, B, step):
        part = context[i:i + step] if context is not None else None
        g = model.masks(z[i:i + step], transformed=True, context=part).abs()           # (b, K, C, H, W)
        maps.append(torch.einsum("bkchw,kc,bchw->bkhw", g, w, z[i:i + step].abs()))
    return upsample(torch.cat(maps), x.shape[-1])


def localisation(model: HPNet, data: MultiLabelDataset, max_images: int = 64,
                 methods: Sequence[str] = METHODS, top_k: int = 3,
                 mean_masks: torch.Tensor | None = None, patch: int | None = None, backend: str = "builtin",
                 batch_size: int = 32, n_boot: int = 1000, seed: int = 0) -> dict:
    """How much of each explanation lies where the attribute's evidence is (synthetic faces only).

    For each image and attribute, the share of the map's energy inside the attribute's evidence
    region (``data.region_masks``), averaged over attributes and images, with a bootstrap interval
    over images; "pointing" is the share of maps whose maximum lies inside. "attention" is the sum
    of the masks of the attribute's ``top_k`` channels by mean mask x |w_k| (Fig. 4's choice;
    ``mean_masks`` (K, C) defaults to the grid of these images); "pooled" what the classifier pools,
    sum_c |w_kc g(M_kc) z_c| (:func:`pooled_maps`). "chance" is the region's area share.
    Returns ``{method: {"score", "ci_low", "ci_high", "n", "pointing", "per_attribute"}, "chance":
    {...}, "images", "backend", "top_k", "patch"}``.
    """
    if not hasattr(data, "region_masks"):
        raise HPNetError("localisation needs evidence regions: only the synthetic data set has them")
    if "attention" in methods and not model.has_masks:
        raise HPNetError("this model has linear heads (plain CNN): it has no attention masks to localise")
    backend = resolve_backend(backend)
    n = min(int(max_images), len(data))
    device = model_device(model)
    top = None
    if "attention" in methods:
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
    if method == "pooled":
        return pooled_maps(model, x)
    if method == "gradcam":
        return gradcam_maps(model, x, backend)
    if method == "saliency":
        return saliency_maps(model, x, backend)
    if method == "permutation":
        return permutation_maps(model, x, patch, seed)
    raise HPNetError(f"localisation method must be one of {', '.join(METHODS)}; got {method!r}")


def _localisation_entry(frac: torch.Tensor, hit: torch.Tensor, n_boot: int, seed: int) -> dict:
    """Mean over attributes per image, then mean over images with a bootstrap interval over images."""
    with warnings.catch_warnings():  # an attribute whose region is always empty is NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        per_image = np.nanmean(frac.numpy(), axis=1) if frac.numel() else np.zeros(0)
        pointing = float(np.nanmean(hit.numpy())) if hit.numel() else math.nan
        per_attribute = np.nanmean(frac.numpy(), axis=0) if frac.numel() else np.zeros(0)
    entry = mean_ci(per_image, n_boot, seed)
    entry.update(pointing=pointing, per_attribute=rounded(torch.from_numpy(per_attribute)))
    return entry
