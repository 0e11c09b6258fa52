"""Face parts: the segmentation that channel dissection (:mod:`hpnet.analysis.dissect`) labels channels with.

A data set that knows where the parts of its faces lie has ``parts`` (names, a subset of
:data:`PARTS` in this order) and ``part_masks(indices)``: float32 ``(n, P, S, S)``, the share of each
pixel covered by each part. The parts are a partition: at every pixel the shares sum to 1 (a pixel
of the background belongs to "background"). Synthetic faces draw their parts
(:mod:`hpnet.data.synthetic.parts`, from the generator's geometry); aligned real faces place them
from five landmarks (:mod:`hpnet.data.layout`).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import HPNetError

# back to front: where two parts overlap, the later one owns the pixel
PARTS: tuple[str, ...] = ("background", "neck", "hair", "ears", "face", "forehead", "cheeks", "chin", "nose",
                          "mouth", "brows", "glasses", "eyes", "hat")


def has_parts(data: object) -> bool:
    """Whether ``data`` knows where the parts of its faces lie."""
    return bool(getattr(data, "parts", None)) and callable(getattr(data, "part_masks", None))


def part_masks(data: object, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """The part shares ``(n, P, S, S)`` of the images at ``indices``, or one line saying the data has none."""
    if not has_parts(data):
        raise HPNetError("this data set does not say where face parts lie: synthetic faces, aligned CelebA "
                         "and CSV files with landmark columns do")
    return data.part_masks(indices)


def coverage(labels: np.ndarray, sub: int, parts: int) -> np.ndarray:
    """Part shares (n, P, S, S) float32 from part labels (n, S * sub, S * sub): ``sub`` x ``sub`` points per pixel."""
    index = torch.from_numpy(labels).long().unsqueeze(1)                                    # (n, 1, Sf, Sf)
    onehot = torch.zeros(index.shape[0], parts, *index.shape[2:]).scatter_(1, index, 1.0)   # (n, P, Sf, Sf)
    return (F.avg_pool2d(onehot, sub) if sub > 1 else onehot).numpy()


def supersampling(size: int) -> int:
    """Points per pixel side: small images are labelled on a finer grid, so a part smaller than a pixel
    still gets its share (as the synthetic evidence regions do)."""
    return max(1, -(-48 // size))
