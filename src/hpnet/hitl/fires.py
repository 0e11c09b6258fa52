"""Where a channel fires on the page's images, beside its attention mask: the maps and their pictures.

For channel c on cached images, :func:`channel_maps` gives its activation z_c upsampled bilinearly to
the image and the region where that exceeds the channel's firing threshold T_c: the rule network
dissection names the channel's face part by (:func:`hpnet.analysis.dissect.firing`, T_c from the
view's dissection; without face parts, the same quantile of z_c over the cached images); and its
attention mask for one attribute (or the mean over the attributes), upsampled likewise.
:func:`overlay_png` draws a map over its image as the page's canvases do (a heat from transparent
to red) with the firing region outlined.
"""
from __future__ import annotations

import io
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..analysis.dissect import DissectSettings, firing
from .network import Network

SHOWN = 128                  # the pictures are about this many pixels wide (a whole multiple of the image)
OUTLINE = (0, 200, 255)      # the firing region's outline


class ChannelMaps(NamedTuple):
    """Channel c on ``images`` (n of them, S x S pixels)."""

    images: list[int]
    activation: torch.Tensor           # (n, S, S) z_c upsampled over 2 T_c, clipped to [0, 1]: T_c shows half-way
    fires: torch.Tensor                # (n, S, S) bool: where z_c upsampled exceeds T_c
    mask: torch.Tensor | None          # (n, S, S) its mask for the attribute (or the mean), None without masks
    threshold: float                   # T_c


def thresholds(net: Network) -> torch.Tensor:
    """T (C,): the view's dissection's, else each channel's quantile of z over the cached images."""
    if net.view.dissection is not None:
        return net.view.dissection.thresholds.float()
    z = net.z.float().transpose(0, 1).flatten(1)                                             # (C, N*h*w)
    k = min(z.shape[1] - 1, int(np.floor(DissectSettings().quantile * (z.shape[1] - 1))))    # as dissect's
    return z.kthvalue(k + 1, dim=1).values


def channel_maps(net: Network, c: int, images: list[int], attribute: int | None, size: int,
                 limits: torch.Tensor) -> ChannelMaps:
    """The maps of channel c on the cached ``images`` (checked ids); the mask of ``attribute`` (an
    index; None: the mean over attributes). ``limits`` (C,): each channel's T. Batched over the images."""
    z = net.z[images].float()                                                                # (n, C, h, w)
    up, fires = firing(z[:, c:c + 1], limits[c:c + 1], size)
    scale = 2 * limits[c] if limits[c] > 0 else net.z[:, c].float().amax().clamp_min(1e-12)
    mask = None
    if net.has_masks:
        context = net.context[images] if net.context is not None else None
        m = net.model.masks(z, True, context)[:, :, c].float()                              # (n, K, h, w)
        m = m[:, attribute:attribute + 1] if attribute is not None else m.mean(1, keepdim=True)
        mask = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)[:, 0].clamp(0, 1)
    return ChannelMaps(list(images), (up[:, 0] / scale).clamp(0, 1), fires[:, 0], mask,
                       float(limits[c]))


def overlay_png(image: torch.Tensor, heat: torch.Tensor, outline: torch.Tensor | None = None) -> bytes:
    """The image (3, S, S) uint8 enlarged to about :data:`SHOWN` pixels, the heat (S, S) in [0, 1] over
    it (transparent at 0, red at 1, as the page's canvases), and the border of ``outline`` (S, S) bool."""
    scale = max(1, SHOWN // image.shape[-1])
    grow = lambda a: np.repeat(np.repeat(a, scale, axis=0), scale, axis=1)  # noqa: E731
    rgb = grow(image.permute(1, 2, 0).numpy().astype(np.float32))
    v = grow(heat.clamp(0, 1).numpy().astype(np.float32))[..., None]
    colour = np.concatenate([np.full_like(v, 255.0), 220.0 * (1 - v), np.zeros_like(v)], axis=-1)
    alpha = 200.0 / 255.0 * v
    out = (1 - alpha) * rgb + alpha * colour
    if outline is not None:
        out[_border(grow(outline.numpy().astype(bool)))] = OUTLINE
    buffer = io.BytesIO()
    Image.fromarray(out.round().clip(0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _border(region: np.ndarray) -> np.ndarray:
    """The pixels of ``region`` with a 4-neighbour outside it (outside the picture counts as outside)."""
    padded = np.pad(region, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return region & ~inner
