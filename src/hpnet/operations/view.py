"""What a person is shown of a network, read off it once on images other than those measured.

A :class:`View` holds, per (attribute k, channel c), the head weight ``w_kc`` and what the page and
the figures show of the channel's part in the decision (``seen``): the mean mask of Fig. 5 for a
network with masks, the mean |activation| for a plain CNN (the same for every attribute). Every
operation's card and formula read a view, never the model.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..analysis.dissect import ChannelRoles, DissectSettings, channel_dissection
from ..analysis.masks import mean_mask_grid
from ..core.stream import inference, model_device, stream
from ..core.tone import mask_transform
from ..data.base import MultiLabelDataset
from ..data.parts import has_parts
from ..model import HPNet


@dataclass(frozen=True)
class View:
    """What a person sees of one network (float64 tensors, on the CPU)."""

    network: str                      # how results and logs name it, e.g. "demo (attention)"
    attributes: tuple[str, ...]
    weights: torch.Tensor             # (K, C) head weights w_kc
    seen: torch.Tensor                # (K, C) mean mask (Fig. 5), or mean |activation| without masks
    activation: torch.Tensor          # (C,) mean |GAP(z)_c|
    contributions: torch.Tensor       # (K, C) mean |w_kc pooled_kc|: each channel's share of each logit
    has_masks: bool
    n: torch.Tensor                   # (K,) the network's own tone curve g(M; n, beta)
    beta: torch.Tensor
    roles: tuple[str, ...] | None = None   # (C,) each channel's face part or "none"; None: no parts known
    parts: tuple[str, ...] = ()             # the face parts the roles are named from
    dissection: ChannelRoles | None = None  # the roles with their IoU and firing thresholds (None: no parts)

    @property
    def channels(self) -> int:
        return self.weights.shape[1]

    @property
    def tone_is_identity(self) -> bool:
        return bool((self.n == 1).all() and (self.beta == 0).all())

    def shown(self) -> torch.Tensor:
        """(K, C) what the heads pool of each channel as the network is: g_own(seen), or seen."""
        if not self.has_masks or self.tone_is_identity:
            return self.seen
        return mask_transform(self.seen, self.n.view(-1, 1), self.beta.view(-1, 1))

    def evidence(self) -> torch.Tensor:
        """(K, C) signed evidence ``w_kc x shown_kc``; |evidence| is what the pruning formula weighs."""
        return self.weights * self.shown()

    def total(self) -> torch.Tensor:
        """(K,) each attribute's whole evidence ``sum_c |w_kc| shown_kc`` (1 where it is 0)."""
        total = self.evidence().abs().sum(1)
        return torch.where(total > 0, total, torch.ones_like(total))

    def replace(self, **changes) -> "View":
        return dataclasses.replace(self, **changes)

    def attribute(self, name: str) -> int:
        return self.attributes.index(name)

    def channels_of(self, part: str) -> tuple[int, ...]:
        """The channels whose role is ``part`` (none when the view has no roles)."""
        return tuple(c for c, role in enumerate(self.roles or ()) if role == part)


def read_view(model: HPNet, data: MultiLabelDataset, network: str, max_images: int | None = 256,
              batch_size: int = 100, progress: bool = False) -> View:
    """The view of ``model`` from the first ``max_images`` of ``data`` (not the images measured); the
    channels' roles from the same images when they say where face parts lie."""
    usage = channel_usage(model, data, max_images, batch_size, progress)
    K = model.config.num_attributes
    state = model.operation_state()
    seen = usage["mean_masks"] if model.has_masks else usage["activation"].view(1, -1).expand(K, -1).clone()
    roles, parts, dissection = None, (), None
    if has_parts(data) and len(data):
        settings = DissectSettings(max_images=len(data) if max_images is None else max_images)
        dissection = channel_dissection(model, data, settings, progress)
        roles, parts = dissection.roles, tuple(data.parts)
    return View(network, tuple(model.attribute_names), usage["weights"], seen, usage["activation"],
                usage["contributions"], model.has_masks,
                state.n.double().cpu() if state.n is not None else torch.ones(K, dtype=torch.float64),
                state.beta.double().cpu() if state.beta is not None else torch.zeros(K, dtype=torch.float64),
                roles, parts, dissection)


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
