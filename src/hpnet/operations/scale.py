"""Scale channels by a factor alpha for every attribute: the network's counterpart of perturbing one
coefficient of the paper's regression example (alpha = 0 is pruning, alpha = 1 no change).

What a person is shown, per attribute k: the evidence the scaled channels S carry, signed and as a
share of the whole (as for pruning), and alpha. The formula: the logit changes by (alpha - 1) times
that signed share (size: |alpha - 1| times the share).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..model import OperationState
from .base import Card, Field, Operation, Prediction, register, check_keys, checked_channels, checked_number
from .prune import channel_sets, draw_channels, evidence_on
from .view import View

ALPHA_LIMITS = (0.0, 2.0)
ALPHAS = (0.0, 0.5, 1.5, 2.0)          # the factors the score and the trials draw from


@dataclass(frozen=True)
class ChannelsScaled:
    channels: tuple[int, ...]
    alpha: float

    def to_json(self) -> dict:
        return {"channels": list(self.channels), "alpha": self.alpha}


@register
class Scale(Operation):
    name = "scale"
    title = "Scale channels"
    summary = "Multiply feature channels by a factor alpha in [0, 2] for every attribute (alpha = 0 switches them off)."
    shown = ("For each attribute, the evidence the scaled channels carry (head weight x mean mask, summed over "
             "them), signed and as a share of the attribute's whole evidence, and the factor alpha.")
    formula_text = ("change_k = (alpha - 1) sum_{c in S} w_kc mbar_kc / sum_c |w_kc| mbar_kc; size_k = |alpha - 1| "
                    "sum_{c in S} |w_kc| mbar_kc / sum_c |w_kc| mbar_kc")
    fields = (Field("channels", "channels", "channels scaled"),
              Field("alpha", "number", "alpha", ALPHA_LIMITS[0], ALPHA_LIMITS[1], 0.05, 1.0))

    def parse(self, spec: dict, view: View) -> ChannelsScaled:
        spec = check_keys(spec, ("channels", "alpha"), "a scale operation")
        channels = checked_channels(spec.get("channels"), view.channels)
        return ChannelsScaled(channels, checked_number(spec.get("alpha"), "alpha", *ALPHA_LIMITS))

    def apply(self, state: OperationState, params: ChannelsScaled) -> OperationState:
        keep = state.keep.clone()
        keep[list(params.channels)] *= params.alpha
        return state._replace(keep=keep)

    def card(self, view: View, params: ChannelsScaled) -> Card:
        signed, share = evidence_on(view, params.channels)
        return Card(self.name, self.describe(params), {"evidence": signed, "share": share},
                    {"evidence": "evidence on the scaled channels (signed, share of the whole)",
                     "share": "share of the attribute's evidence on them"},
                    {"channels": list(params.channels), "alpha": params.alpha})

    def formula(self, card: Card) -> Prediction:
        factor = card.common["alpha"] - 1.0
        return Prediction(factor * card.facts["evidence"], abs(factor) * card.facts["share"])

    def describe(self, params: ChannelsScaled) -> str:
        ids = ", ".join(str(c) for c in params.channels)
        return f"scale channel{'s' if len(params.channels) > 1 else ''} {ids} by {params.alpha:g}"

    def draw(self, rng: np.random.Generator, view: View) -> ChannelsScaled:
        return ChannelsScaled(draw_channels(rng, view.channels), float(rng.choice(ALPHAS)))

    def scored(self, view: View, settings) -> list[ChannelsScaled]:
        sets = channel_sets(view.channels, settings.groups, settings.singles, settings.seed)
        gen = torch.Generator().manual_seed(int(settings.seed) + 1)
        picks = torch.randint(len(ALPHAS), (len(sets),), generator=gen).tolist()
        return [ChannelsScaled(s, ALPHAS[i]) for s, i in zip(sets, picks)]
