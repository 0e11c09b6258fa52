"""What the attention masks show: the paper's Fig. 4, 5, 6 and Table 4 for a trained run.

- Fig. 4: for chosen attributes, the top channels ranked by mean mask value times |w_k|
  (:func:`top_channels`), drawn as per-image mask maps over the input (:func:`mask_maps`).
- Fig. 5: the K x C grid of mean mask values (``hpnet.analysis.masks.mean_mask_grid``).
- Fig. 6: the C x C channel correlation (``hpnet.analysis.correlation.channel_correlation``),
  also ordered by average-linkage clustering on 1 - r (:func:`cluster_order`).
- Table 4: for each attribute, the attributes whose rows of the Fig. 5 grid correlate most
  (:func:`attribute_correlation_table`).

:func:`analyse` does all of it for a model and returns an :class:`~hpnet.results.AnalysisResult`
and the Fig. 4 mask maps; the ``analyse`` command (:mod:`hpnet.commands.analyse`) writes them, the
figures drawn by :mod:`hpnet.report`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .. import checks
from ..core.stream import head, to_input
from ..data.base import MultiLabelDataset
from ..errors import HPNetError
from ..model import HPNet
from ..results import AnalysisResult
from .correlation import channel_correlation
from .masks import mean_mask_grid

FIG4_ATTRIBUTES = ("Smiling", "Mouth_Slightly_Open", "Black_Hair", "Blond_Hair")


# ----------------------------------------------------------------------------------------------
# Fig. 4


def top_channels(mean_masks: torch.Tensor, head_weights: torch.Tensor, k: int = 3) -> torch.Tensor:
    """The k channels of each attribute with the largest mean mask value x |w_k|: LongTensor (K, k).

    mean_masks, head_weights: (K, C). Ties keep the lower channel id first.
    """
    score = torch.as_tensor(mean_masks, dtype=torch.float32) * torch.as_tensor(head_weights).float().abs()
    order = torch.argsort(score, dim=1, descending=True, stable=True)
    return order[:, :min(k, score.shape[1])]


@torch.no_grad()
def mask_maps(model: HPNet, images: torch.Tensor, attributes: Sequence[int],
              channels: torch.Tensor) -> torch.Tensor:
    """Mask maps M^k_c of the given attributes and channels: (n, len(attributes), k, S, S).

    images: uint8 (n, 3, S, S); channels: (len(attributes), k) channel ids per attribute.
    Masks on a smaller feature map (strided backbone: S/8) are upsampled bilinearly to S x S.
    One image at a time, since the full mask tensor of one image is K x C x H x W.
    """
    if not model.has_masks:
        raise HPNetError("this model has linear heads (plain CNN): it has no attention masks to show")
    model.eval()
    device = next(model.parameters()).device
    attrs = torch.as_tensor(list(attributes), dtype=torch.long)
    channels = torch.as_tensor(channels, dtype=torch.long).cpu()
    size = images.shape[-2:]
    out = []
    for image in images:
        z, context = model.encode(to_input(image[None], device))
        m = model.masks(z, context=context)[0].float().cpu()                          # (K, C, H, W)
        m = m[attrs[:, None], channels]                                                 # (A, k, H, W)
        if m.shape[-2:] != size:
            m = F.interpolate(m, size=tuple(size), mode="bilinear", align_corners=False).clamp(0, 1)
        out.append(m)
    return torch.stack(out) if out else torch.zeros(0, len(attrs), channels.shape[1], *size)


# ----------------------------------------------------------------------------------------------
# Table 4 and Fig. 6 ordering


def attribute_correlation(mean_masks: torch.Tensor) -> torch.Tensor:
    """Pearson correlation (K, K) between the attributes' C-vectors of the Fig. 5 grid (NaN -> 0)."""
    grid = torch.as_tensor(mean_masks, dtype=torch.float64)
    return torch.nan_to_num(torch.corrcoef(grid), nan=0.0)


def attribute_correlation_table(mean_masks: torch.Tensor, names: Sequence[str], top: int = 5) -> list[dict]:
    """Table 4: for each attribute, the ``top`` other attributes whose grid rows correlate most.

    Returns ``[{"attribute": name, "top": [{"name": other, "correlation": r}, ...]}, ...]``.
    """
    r = attribute_correlation(mean_masks)
    K = r.shape[0]
    if len(names) != K:
        raise HPNetError(f"attribute table: {len(names)} names for a grid of {K} attributes")
    table = []
    for i in range(K):
        others = [j for j in range(K) if j != i]
        ranked = sorted(others, key=lambda j: (-float(r[i, j]), j))[:top]
        table.append({"attribute": names[i],
                      "top": [{"name": names[j], "correlation": float(r[i, j])} for j in ranked]})
    return table


def cluster_order(corr: torch.Tensor | np.ndarray) -> list[int]:
    """An order of the C channels that puts correlated channels next to each other (Fig. 6).

    Deterministic average-linkage agglomerative clustering on the distance 1 - r (NaN r counts as
    0). Clusters merge closest pair first (lowest index on ties); at each merge the two leaf
    orders are joined in whichever of the four orientations puts the closest end channels side by
    side. O(C^3), fine for C <= 256.
    """
    r = np.nan_to_num(np.asarray(corr.cpu() if hasattr(corr, "cpu") else corr, dtype=float))
    C = r.shape[0]
    leaf = 1.0 - r
    d = leaf.copy()
    np.fill_diagonal(d, np.inf)
    sizes = np.ones(C)
    orders: dict[int, list[int]] = {i: [i] for i in range(C)}
    for _ in range(C - 1):
        i, j = sorted(np.unravel_index(int(np.argmin(d)), d.shape))
        orders[i] = _join(orders[i], orders.pop(j), leaf)
        merged = (sizes[i] * d[i] + sizes[j] * d[j]) / (sizes[i] + sizes[j])  # Lance-Williams, average
        sizes[i] += sizes[j]
        d[i, :], d[:, i] = merged, merged
        d[j, :], d[:, j] = np.inf, np.inf
        d[i, i] = np.inf
    return [int(c) for order in orders.values() for c in order]


def _join(a: list[int], b: list[int], dist: np.ndarray) -> list[int]:
    """a + b in the orientation (a or reversed a, b or reversed b) with the closest touching ends."""
    options = [(a, b), (a, b[::-1]), (a[::-1], b), (a[::-1], b[::-1])]
    best = min(range(4), key=lambda t: (dist[options[t][0][-1], options[t][1][0]], t))
    return list(options[best][0]) + list(options[best][1])


# ----------------------------------------------------------------------------------------------
# all of it


@dataclass
class AnalysisSettings:
    """What ``hpnet analyse`` computes: Fig. 4 rows (``attributes``: names or indices; default the
    paper's four), ``samples`` images in Fig. 4, ``k`` top channels each, at most ``max_images``
    images for the grid and the correlation."""

    attributes: Sequence[str | int] | None = field(default=None, metadata={
        "flag": "--attributes", "help": "attributes shown in Fig. 4"})
    samples: int = field(default=4, metadata={"flag": "--samples", "help": "sample images in Fig. 4"})
    max_images: int = field(default=2000, metadata={
        "flag": "--max-images", "help": "evaluate on at most N images (default {default})"})
    k: int = 3
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.attributes is not None:
            self.attributes = checks.names(self.attributes, "--attributes", indices=True)
        checks.count(self.samples, "--samples")
        checks.count(self.max_images, "--max-images")
        checks.count(self.k, "k")
        checks.count(self.batch_size, "batch_size")


class MaskMaps(NamedTuple):
    """What Fig. 4 draws: the sample images (n, 3, S, S) uint8 and their mask maps (n, A, k, S, S)."""

    images: torch.Tensor
    maps: torch.Tensor


def analyse(model: HPNet, eval_data: MultiLabelDataset, train_data: MultiLabelDataset,
            settings: AnalysisSettings | None = None, progress: bool = False) -> tuple[AnalysisResult, MaskMaps]:
    """Fig. 4, 5, 6 and Table 4 of an attention model.

    The mean-mask grid and the Fig. 4 samples come from the first ``max_images`` of ``eval_data``,
    the channel correlation from the first ``max_images`` of ``train_data``. Returns the result
    (what analysis.json holds; ``run``, ``images`` splits and ``figures`` are the caller's to fill)
    and the Fig. 4 mask maps.
    """
    settings = settings or AnalysisSettings()
    if not model.has_masks:
        raise HPNetError("the model has linear heads (plain CNN), so it has no attention masks to analyse; "
                         "train with --head attention")
    names = model.attribute_names
    chosen = select_attributes(names, settings.attributes)
    eval_data, train_data = head(eval_data, settings.max_images), head(train_data, settings.max_images)
    grid = mean_mask_grid(model, eval_data, batch_size=settings.batch_size, progress=progress).float().cpu()
    corr = channel_correlation(model, train_data, batch_size=settings.batch_size,
                               progress=progress).double().cpu()
    weights = model.heads.weight.detach().float().cpu() * model.channel_keep.float().cpu()
    top = top_channels(grid, weights, settings.k)
    sample_idx = list(range(min(settings.samples, len(eval_data))))
    images = eval_data.images[sample_idx]
    maps = mask_maps(model, images, chosen, top[chosen])
    result = AnalysisResult(
        backbone=model.config.backbone, attribute_names=list(names), channels=int(grid.shape[1]),
        images={"mean_mask_grid": len(eval_data), "channel_correlation": len(train_data),
                "fig4_samples": sample_idx},
        settings={"attributes": [names[i] for i in chosen], "samples": settings.samples,
                  "max_images": settings.max_images, "k": settings.k,
                  "top_channel_score": "mean mask value x |w_k|", "cluster": "average linkage on 1 - Pearson r"},
        mean_mask_grid=_rounded(grid), channel_correlation=_rounded(torch.nan_to_num(corr)),
        pruned_channels=[int(c) for c in torch.nonzero(model.channel_keep == 0).flatten()],
        cluster_order=cluster_order(corr), attribute_correlation=_rounded(attribute_correlation(grid)),
        attribute_table=attribute_correlation_table(grid, names),
        top_channels={names[i]: top[i].tolist() for i in range(len(names))},
        fig4_attributes=[names[i] for i in chosen])
    return result, MaskMaps(images, maps)


def _rounded(t: torch.Tensor, decimals: int = 6) -> list:
    """A tensor as nested lists rounded to ``decimals`` (keeps analysis.json small)."""
    return t.double().round(decimals=decimals).tolist()


def select_attributes(names: Sequence[str], attributes: Sequence[str | int] | None, most: int = 4) -> list[int]:
    """Indices of the Fig. 4 attributes (names or indices); default: the paper's four, else the first."""
    if attributes:
        return [_attribute_index(names, a) for a in attributes]
    chosen = [names.index(a) for a in FIG4_ATTRIBUTES if a in names]
    chosen += [i for i in range(len(names)) if i not in chosen]
    return chosen[:most]


def _attribute_index(names: Sequence[str], a: str | int) -> int:
    if isinstance(a, int) or (isinstance(a, str) and a.isdigit()):
        if 0 <= int(a) < len(names):
            return int(a)
    elif a in names:
        return list(names).index(a)
    raise HPNetError(f"--attributes: {a!r} is not an attribute of this model; it has {', '.join(names)}")
