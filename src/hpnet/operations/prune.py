"""Semantic channel pruning as an operation: switch channels off for every attribute (paper Fig. 3, 7).

What a person is shown, per attribute k: the evidence the switched-off channels S carry,
``sum_{c in S} w_kc mbar_kc`` (mbar the Fig. 5 mean mask, or the mean activation of a plain CNN),
signed and as a share of the attribute's whole evidence ``sum_c |w_kc| mbar_kc``. The formula: the
logit loses what the channels carried (change = -signed share) and moves by the share (size).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import HPNetError
from ..model import OperationState
from .base import Card, Field, Operation, Prediction, register, check_keys, checked_channels
from .view import View


@dataclass(frozen=True)
class ChannelsOff:
    channels: tuple[int, ...]

    def to_json(self) -> dict:
        return {"channels": list(self.channels)}


def channel_sets(channels: int, groups: int = 16, singles: int | None = 32, seed: int = 0,
                 group_size: int | None = None) -> list[tuple[int, ...]]:
    """The channel sets the score perturbs: ``groups`` random groups of ``group_size`` (default C/8)
    channels, then single channels (every channel when C <= ``singles``, else ``singles`` random
    ones). Chosen from C and the seed alone, so every network of that width gets the same sets."""
    gen = torch.Generator().manual_seed(int(seed))
    size = max(1, channels // 8) if group_size is None else int(group_size)
    if not 1 <= size <= channels:
        raise HPNetError(f"pruning group size must be in 1..{channels}, got {size}")
    sets = [tuple(sorted(torch.randperm(channels, generator=gen)[:size].tolist())) for _ in range(max(0, groups))]
    n_single = channels if singles is None or singles >= channels else max(0, int(singles))
    single_ids = range(channels) if n_single == channels else \
        sorted(torch.randperm(channels, generator=gen)[:n_single].tolist())
    return sets + [(int(c),) for c in single_ids]


def draw_channels(rng: np.random.Generator, channels: int) -> tuple[int, ...]:
    """A random channel set as the score draws them: one channel (2 in 3) or a group of C/8."""
    size = max(1, channels // 8) if rng.random() < 1 / 3 else 1
    return tuple(sorted(int(c) for c in rng.choice(channels, size=size, replace=False)))


def evidence_on(view: View, channels: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(signed, share) (K,) each: the evidence the channels carry, signed and |.|, over the whole."""
    pick = torch.zeros(1, view.channels, dtype=torch.float64)
    pick[0, list(channels)] = 1.0
    evidence, total = view.evidence(), view.total()
    return (pick @ evidence.T)[0] / total, (pick @ evidence.abs().T)[0] / total


def describe_channels(verb: str, channels: tuple[int, ...]) -> str:
    ids = ", ".join(str(c) for c in channels)
    return f"{verb} channel {ids}" if len(channels) == 1 else f"{verb} channels {ids}"


@register
class Prune(Operation):
    name = "prune"
    title = "Switch channels off"
    summary = "Switch feature channels off (set them to 0) for every attribute, as semantic pruning does."
    shown = ("For each attribute, the evidence the switched-off channels carry (head weight x mean mask, summed "
             "over them), signed and as a share of the attribute's whole evidence.")
    formula_text = ("change_k = -sum_{c in S} w_kc mbar_kc / sum_c |w_kc| mbar_kc; size_k = sum_{c in S} "
                    "|w_kc| mbar_kc / sum_c |w_kc| mbar_kc (mbar: the Fig. 5 mean mask, or the mean activation)")
    score_on = "size"
    shared_predictor = "contribution"
    fields = (Field("channels", "channels", "channels switched off"),)

    def parse(self, spec: dict, view: View) -> ChannelsOff:
        spec = check_keys(spec, ("channels",), "a prune operation")
        return ChannelsOff(checked_channels(spec.get("channels"), view.channels))

    def apply(self, state: OperationState, params: ChannelsOff) -> OperationState:
        keep = state.keep.clone()
        keep[list(params.channels)] = 0.0
        return state._replace(keep=keep)

    def card(self, view: View, params: ChannelsOff) -> Card:
        signed, share = evidence_on(view, params.channels)
        return Card(self.name, self.describe(params), {"evidence": signed, "share": share},
                    {"evidence": "evidence on the switched-off channels (signed, share of the whole)",
                     "share": "share of the attribute's evidence on them"},
                    {"channels": list(params.channels)})

    def formula(self, card: Card) -> Prediction:
        return Prediction(-card.facts["evidence"], card.facts["share"])

    def describe(self, params: ChannelsOff) -> str:
        return describe_channels("switch off", params.channels)

    def draw(self, rng: np.random.Generator, view: View) -> ChannelsOff:
        return ChannelsOff(draw_channels(rng, view.channels))

    def scored(self, view: View, settings) -> list[ChannelsOff]:
        return [ChannelsOff(s) for s in channel_sets(view.channels, settings.groups, settings.singles, settings.seed)]

    def predictors(self, view: View) -> dict[str, View]:
        ones = torch.ones_like(view.seen)
        first = "mask_x_weight" if view.has_masks else "weight_x_activation"
        out = {first: view}
        if view.has_masks:
            out["mask_x_weight_x_activation"] = view.replace(seen=view.seen * view.activation.view(1, -1))
        out["weight"] = view.replace(seen=ones)
        out["contribution"] = view.replace(weights=view.contributions, seen=ones)
        return out
