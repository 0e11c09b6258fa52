"""Network dissection of the feature channels: the face part where each channel fires.

After Bau et al. (2017, "Network Dissection"): for each channel c, a threshold T_c is the top
``quantile`` of its activations z_c over every position of every image (here 0.95: the channel's
top 5%); on each image the activation map is upsampled bilinearly to the image and thresholded,
a_c = up(z_c) > T_c, and compared with each face part p (:mod:`hpnet.data.parts`). Intersections
and unions are summed over the images, IoU_cp = sum |a_c & p| / sum |a_c | p|, and the channel is
named by its best part, or "none" when that IoU is below ``threshold`` (here 0.06). A 95% interval
of the best part's IoU comes from resampling the images (percentile bootstrap).

Why 0.95 and 0.06 rather than NetDissect's 0.995 and 0.04: a face's parts cover 0.5% (ears) to 60%
(background) of a synthetic image. At the top 0.5% a channel that fires on exactly the background or
the hair reaches an IoU of only 0.008 or 0.04, so those parts could never be named. At the top 5%
every part can be, and the threshold must separate a channel that fires on no part in particular
from one that fires on the largest part. Measured on synthetic faces with a hand-set extractor
(``tests/test_dissect.py``, 64 images of 32 and 64 pixels): a channel of pixel noise reaches IoU
0.048 at best (with the background), a channel firing exactly on the background 0.075-0.078, one
firing exactly on the mouth 0.79-1.0, a constant channel 0. NetDissect's 0.04 would name the noise
channel "background"; 0.06 lies between the first two.

:func:`dissect` also measures how the channels' roles match the attributes' evidence
(:mod:`hpnet.analysis.roles`) and returns a :class:`~hpnet.results.DissectResult`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .. import checks
from ..core.stream import image_count, inference, model_device, stream
from ..data.base import MultiLabelDataset
from ..data.parts import has_parts, part_masks
from ..errors import HPNetError
from ..model import HPNet
from ..results import DissectResult
from .masks import mean_mask_grid
from .roles import consistency, fig4_roles

NONE = "none"
_ELEMENTS = 1 << 24        # bounds the activations held at once (64 MB of float32)


@dataclass
class DissectSettings:
    """How channels are dissected: on the first ``max_images`` images, each channel's top ``quantile``
    of activations against the face parts, "none" below IoU ``threshold``; ``top`` channels per
    attribute in the Fig. 4 comparison; ``n_boot`` resamples of the images for the intervals."""

    max_images: int = field(default=256, metadata={
        "flag": "--max-images", "help": "dissect on at most N images (default {default}: the images the "
                                        "operations' view is read from)"})
    quantile: float = field(default=0.95, metadata={
        "flag": "--quantile", "help": "a channel fires where it exceeds this quantile of its activations "
                                      "(default {default})"})
    threshold: float = field(default=0.06, metadata={
        "flag": "--threshold", "help": "a channel whose best IoU is below this has no part: 'none' "
                                       "(default {default})"})
    top: int = field(default=5, metadata={"flag": "--top", "help": "top channels per attribute in the Fig. 4 "
                                                                   "comparison (default {default})"})
    n_boot: int = field(default=1000, metadata={"flag": "--boot", "help": "bootstrap resamples of the images "
                                                                          "(default {default})"})
    seed: int = 0
    batch_size: int = 32

    def __post_init__(self) -> None:
        checks.count(self.max_images, "--max-images")
        checks.number(self.quantile, "--quantile", 0, 1, low_open=True)
        if self.quantile >= 1:
            raise HPNetError(f"--quantile must be below 1, got {self.quantile}")
        checks.number(self.threshold, "--threshold", 0, 1)
        checks.count(self.top, "--top")
        checks.count(self.n_boot, "--boot")
        checks.seed(self.seed, "seed")
        checks.count(self.batch_size, "batch_size")


class Overlaps(NamedTuple):
    """Per image: intersections and unions (n, C, P) of each channel's firing region with each part,
    and the share of the image where each channel fires (n, C); the thresholds T (C,)."""

    intersection: torch.Tensor
    union: torch.Tensor
    area: torch.Tensor
    thresholds: torch.Tensor
    parts: tuple[str, ...]


def overlaps(model: HPNet, data: MultiLabelDataset, settings: DissectSettings | None = None,
             progress: bool = False) -> Overlaps:
    """Two passes over the first ``max_images`` images: the thresholds, then the overlaps (the second
    reuses the features of the first when they fit in memory)."""
    s = settings or DissectSettings()
    if not has_parts(data):
        part_masks(data, [0])                                   # the one-line error
    n = image_count(data, s.max_images)
    if n == 0:
        raise HPNetError("dissection needs at least one image")
    device = model_device(model)
    thresholds, kept = _thresholds(model, data, s, n, progress)
    inter, union, area = [], [], []
    start = 0
    for z in kept if kept is not None else _features(model, data, s, n, progress, "dissect"):
        z = z.to(device)
        parts = part_masks(data, torch.arange(start, start + z.shape[0])).to(device).flatten(2)    # (B, P, S*S)
        for i, u, r in _batch_overlaps(z, parts, thresholds.to(device), data.images.shape[-1]):
            inter.append(i), union.append(u), area.append(r)
        start += z.shape[0]
    return Overlaps(torch.cat(inter).double(), torch.cat(union).double(), torch.cat(area).double(),
                    thresholds, tuple(data.parts))


def _features(model: HPNet, data: MultiLabelDataset, s: DissectSettings, n: int, progress: bool, desc: str):
    """z (float32) of each batch of the first ``n`` images."""
    with inference(model):
        for x, _ in stream(data, s.batch_size, model_device(model), n, progress, desc):
            yield model.encode(x)[0].float()


def firing(z: torch.Tensor, thresholds: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where channels fire on images of ``size`` pixels: z (B, C, h, w) upsampled bilinearly to the
    image, and whether it exceeds each channel's threshold T (C,): ``(up, fires)``, both (B, C, S, S)."""
    up = F.interpolate(z, size=(size, size), mode="bilinear", align_corners=False)
    return up, up > thresholds.to(up).view(1, -1, 1, 1)


def _batch_overlaps(z: torch.Tensor, parts: torch.Tensor, thresholds: torch.Tensor, size: int):
    """(intersection, union, area) per slice of images whose upsampled maps fit in memory."""
    B, C = z.shape[:2]
    step = max(1, _ELEMENTS // (C * size * size))
    for i in range(0, B, step):
        fires = firing(z[i:i + step], thresholds, size)[1].flatten(2).float()                # (b, C, S*S)
        p = parts[i:i + step]
        inter = torch.bmm(fires, p.transpose(1, 2))                                          # (b, C, P)
        fired = fires.sum(-1)
        union = fired[:, :, None] + p.sum(-1)[:, None, :] - inter
        yield inter.cpu(), union.cpu(), (fired / (size * size)).cpu()


def _thresholds(model: HPNet, data: MultiLabelDataset, s: DissectSettings, n: int,
                progress: bool) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """T (C,): each channel's ``quantile`` of its activations over every position of the images (at
    most a fixed, seeded sample of positions per image when all of them would not fit in memory);
    and the features of every batch when they fit, else None."""
    gen = torch.Generator().manual_seed(s.seed)
    values, kept, held = [], [], 0
    for z in _features(model, data, s, n, progress, "activation quantiles"):
        B, C, H, W = z.shape
        held += z.numel()
        if held > 2 * _ELEMENTS:
            kept = None                                          # too many to keep: the second pass recomputes
        elif kept is not None:
            kept.append(z.cpu())
        flat = z.permute(1, 0, 2, 3).reshape(C, B, H * W)
        keep = max(1, _ELEMENTS // (C * n))
        if keep < H * W:
            flat = flat[:, :, torch.randperm(H * W, generator=gen)[:keep].to(z.device)]
        values.append(flat.reshape(C, -1).cpu())
    values = torch.cat(values, dim=1)
    k = min(values.shape[1] - 1, int(np.floor(s.quantile * (values.shape[1] - 1))))
    return values.sort(dim=1).values[:, k], kept


def name_channels(o: Overlaps, threshold: float, n_boot: int = 1000, seed: int = 0,
                  level: float = 0.95) -> tuple[list[dict], torch.Tensor]:
    """Each channel's best part by IoU over the images, "none" below ``threshold``, with a percentile
    bootstrap interval of that IoU over the images: ``[{"channel", "part", "best_part", "iou",
    "iou_ci_low", "iou_ci_high", "area"}]``, and the IoU of every channel with every part (C, P)."""
    iou = _ratio(o.intersection.sum(0), o.union.sum(0))                                       # (C, P)
    best = iou.argmax(1)                                                                      # (C,)
    pick = best.view(1, -1, 1).expand(o.intersection.shape[0], -1, 1)
    i_best, u_best = o.intersection.gather(2, pick)[..., 0], o.union.gather(2, pick)[..., 0]  # (n, C)
    rng = np.random.default_rng(seed)
    n = i_best.shape[0]
    counts = torch.from_numpy(rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)).double()  # (n_boot, n)
    boots = _ratio(counts @ i_best, counts @ u_best).numpy()                                  # (n_boot, C)
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(boots, [tail, 100.0 - tail], axis=0)
    area = o.area.mean(0)
    channels = []
    for c in range(iou.shape[0]):
        value = float(iou[c, best[c]])
        name = o.parts[int(best[c])]
        channels.append({"channel": c, "part": name if value >= threshold else NONE, "best_part": name,
                         "iou": value, "iou_ci_low": float(low[c]), "iou_ci_high": float(high[c]),
                         "area": float(area[c])})
    return channels, iou


def _ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(b > 0, a / b.clamp(min=1e-12), torch.zeros_like(a))


class ChannelRoles(NamedTuple):
    """Where each channel fires, as :func:`dissect` names it: per channel ``{"channel", "part",
    "best_part", "iou", ...}`` (:func:`name_channels`; no intervals), the thresholds T (C,) of its
    firing region, the parts, and the rule (``quantile``, IoU ``threshold``, ``images``)."""

    channels: tuple[dict, ...]
    thresholds: torch.Tensor
    parts: tuple[str, ...]
    quantile: float
    threshold: float
    images: int

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(c["part"] for c in self.channels)


def channel_dissection(model: HPNet, data: MultiLabelDataset, settings: DissectSettings | None = None,
                       progress: bool = False) -> ChannelRoles:
    """Each channel's part (or "none"), best part and IoU, and its firing threshold, as :func:`dissect`
    names them with the same settings (without the intervals)."""
    s = settings or DissectSettings()
    o = overlaps(model, data, s, progress)
    channels, _ = name_channels(o, s.threshold, n_boot=1, seed=s.seed)
    named = tuple({k: v for k, v in c.items() if not k.startswith("iou_ci")} for c in channels)
    return ChannelRoles(named, o.thresholds.cpu(), o.parts, s.quantile, s.threshold, int(o.area.shape[0]))


def channel_roles(model: HPNet, data: MultiLabelDataset, settings: DissectSettings | None = None,
                  progress: bool = False) -> tuple[str, ...]:
    """Each channel's part, or "none": the roles :func:`dissect` names with the same settings."""
    return channel_dissection(model, data, settings, progress).roles


def channel_evidence(model: HPNet, data: MultiLabelDataset, settings: DissectSettings,
                     progress: bool = False) -> torch.Tensor:
    """(K, C) |w_kc| x mean mask_kc (the Fig. 5 grid), or |w_kc| x mean |GAP(z)_c| without masks."""
    if model.has_masks:
        return evidence_of(model, mean_mask_grid(model, data, settings.batch_size, settings.max_images, progress))
    device, total, n = model_device(model), torch.zeros(model.config.channels, dtype=torch.float64), 0
    with inference(model):
        for x, _ in stream(data, settings.batch_size, device, settings.max_images, progress, "activations"):
            total += model.encode(x)[0].mean(dim=(2, 3)).abs().sum(0).double().cpu()
            n += x.shape[0]
    return evidence_of(model, (total / max(n, 1)).view(1, -1))


def evidence_of(model: HPNet, seen: torch.Tensor) -> torch.Tensor:
    """(K, C) each attribute's evidence on each channel, |w_kc| (pruned channels 0) x ``seen``: the
    mean masks (K, C), or the mean |GAP(z)_c| (1, C) or (K, C) without masks."""
    weights = (model.heads.weight.detach().float().cpu() * model.channel_keep.float().cpu()).abs().double()
    return weights * torch.as_tensor(seen, dtype=torch.float64).cpu()


def dissect(model: HPNet, data: MultiLabelDataset, settings: DissectSettings | None = None,
            progress: bool = False) -> DissectResult:
    """The part of every channel (:func:`name_channels`), how the roles match the attributes' evidence
    (consistency) and the Fig. 4 comparison of Smiling and Mouth_Slightly_Open, on the first
    ``max_images`` images of ``data``. ``run``, ``split`` and ``figures`` are the caller's to fill."""
    s = settings or DissectSettings()
    o = overlaps(model, data, s, progress)
    channels, iou = name_channels(o, s.threshold, s.n_boot, s.seed)
    roles = [c["part"] for c in channels]
    evidence = channel_evidence(model, data, s, progress)
    names = list(model.attribute_names)
    return DissectResult(
        parts=list(o.parts), channels=channels, iou=iou.round(decimals=6).tolist(),
        consistency=consistency(evidence, roles, names, o.parts, s.n_boot, s.seed),
        fig4=fig4_roles(evidence, channels, names, s.top),
        images=int(o.area.shape[0]), attribute_names=names,
        part_source=str(getattr(data, "landmark_source", "the generator's geometry (synthetic faces)")),
        settings={"quantile": s.quantile, "threshold": s.threshold, "top": s.top, "n_boot": s.n_boot,
                  "seed": s.seed, "ci_level": 0.95, "activation": "z (the features the heads read)",
                  "upsampling": "bilinear to the image size", "thresholds": o.thresholds.tolist(),
                  "evidence": "|w_kc| x mean mask_kc" if model.has_masks else "|w_kc| x mean |GAP(z)_c|"})
