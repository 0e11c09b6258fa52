"""Switch off (or scale) every channel of one face part: "the mouth channels", GAN Dissection's operation
(Bau et al. 2019: switch off the units of a concept and see the effect).

A channel's role is the face part where it fires, named by network dissection on the images the view
is read from (:mod:`hpnet.analysis.dissect`; the view's ``roles``). The operation multiplies the
channels of one part by alpha in [0, 2] for every attribute; it is the scale operation on those
channels, so its card and formula are scale's, with the part named: per attribute k, the evidence
the part's channels carry, signed and as a share of the whole, and the change (alpha - 1) times
that signed share. A part without channels changes nothing. The score and the trials use the parts
that have channels, each at the four factors of the scale operation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.parts import PARTS
from ..errors import HPNetError
from ..model import HPNet, OperationState
from .base import Card, Field, Operation, Prediction, check_keys, checked_number, register, short
from .prune import evidence_on
from .scale import ALPHA_LIMITS, ALPHAS
from .view import View

NONE = "none"


@dataclass(frozen=True)
class PartScaled:
    part: str
    alpha: float
    channels: tuple[int, ...]            # the part's channels in the view it was read against

    def to_json(self) -> dict:
        return {"part": self.part, "alpha": self.alpha, "channels": list(self.channels)}


@register
class Role(Operation):
    name = "role"
    title = "Scale the channels of a face part"
    summary = ("Multiply every channel whose role is one face part (where it fires, by network dissection) by "
               "alpha in [0, 2] for every attribute: alpha = 0 switches off 'the mouth channels'.")
    shown = ("The part and its channels, and for each attribute the evidence they carry (head weight x mean mask, "
             "summed over them), signed and as a share of the attribute's whole evidence, and the factor alpha.")
    formula_text = ("change_k = (alpha - 1) sum_{c: role(c) = part} w_kc mbar_kc / sum_c |w_kc| mbar_kc; size_k = "
                    "|alpha - 1| sum_{c: role(c) = part} |w_kc| mbar_kc / sum_c |w_kc| mbar_kc")
    fields = (Field("part", "choice", "face part", default="mouth", choices=PARTS),
              Field("alpha", "number", "alpha", ALPHA_LIMITS[0], ALPHA_LIMITS[1], 0.05, 1.0))

    def applies_to(self, view_or_model: View | HPNet) -> bool:
        """To a view whose channels have roles, at least one of them a part (a model alone: always)."""
        if isinstance(view_or_model, View):
            return any(role != NONE for role in view_or_model.roles or ())
        return True

    def check_applies(self, view: View) -> None:
        if not self.applies_to(view):
            why = "no channel has a face part" if view.roles is not None else \
                "its images do not say where face parts lie (synthetic faces, aligned CelebA and CSV files with " \
                "landmark columns do)"
            raise HPNetError(f"{self.name}: the {view.network} network's channels have no roles: {why}")

    def parse(self, spec: dict, view: View) -> PartScaled:
        spec = check_keys(spec, ("part", "alpha", "channels"), "a role operation")
        self.check_applies(view)
        part = spec.get("part")
        if not isinstance(part, str) or part not in view.parts:
            raise HPNetError(f"part must be one of {', '.join(view.parts)}, got {short(part)}")
        alpha = checked_number(spec.get("alpha"), "alpha", *ALPHA_LIMITS)
        channels = view.channels_of(part)
        if "channels" in spec and spec["channels"] != list(channels):
            raise HPNetError(f"channels: the {part} channels of the {view.network} network are "
                             f"{list(channels)}, not {short(spec['channels'])}")
        return PartScaled(part, alpha, channels)

    def apply(self, state: OperationState, params: PartScaled) -> OperationState:
        keep = state.keep.clone()
        keep[list(params.channels)] *= params.alpha
        return state._replace(keep=keep)

    def card(self, view: View, params: PartScaled) -> Card:
        self.check_applies(view)
        signed, share = evidence_on(view, params.channels)
        return Card(self.name, self.describe(params), {"evidence": signed, "share": share},
                    {"evidence": f"evidence on the {params.part} channels (signed, share of the whole)",
                     "share": f"share of the attribute's evidence on the {params.part} channels"},
                    {"part": params.part, "channels": list(params.channels), "alpha": params.alpha})

    def formula(self, card: Card) -> Prediction:
        factor = card.common["alpha"] - 1.0
        return Prediction(factor * card.facts["evidence"], abs(factor) * card.facts["share"])

    def describe(self, params: PartScaled) -> str:
        ids = ", ".join(str(c) for c in params.channels) or "none"
        verb = "switch off" if params.alpha == 0 else f"scale by {params.alpha:g}"
        return f"{verb} the {params.part} channels ({ids})"

    def draw(self, rng: np.random.Generator, view: View) -> PartScaled:
        self.check_applies(view)
        parts = _parts_with_channels(view)
        part = parts[int(rng.integers(len(parts)))]
        return PartScaled(part, float(rng.choice(ALPHAS)), view.channels_of(part))

    def scored(self, view: View, settings) -> list[PartScaled]:
        """Every part that has channels, at each factor of :data:`~.scale.ALPHAS`."""
        return [PartScaled(p, a, view.channels_of(p)) for p in _parts_with_channels(view) for a in ALPHAS]


def _parts_with_channels(view: View) -> list[str]:
    return [p for p in view.parts if view.channels_of(p)]
