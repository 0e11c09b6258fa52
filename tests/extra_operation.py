"""A family registered only while a test runs (a helper module, not a test module): the hitl tests
check that it reaches the API, the trials and the page with no edit to hpnet.hitl or its page, and
tests/test_layout.py that it reaches the score, the report and compare's table.

``flip`` multiplies channels by -1 for every attribute; its formula: the logit loses twice the
signed evidence the channels carry.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from hpnet.model import OperationState
from hpnet.operations import OPERATIONS, Card, Field, Operation, Prediction, View, register
from hpnet.operations.base import check_keys, checked_channels
from hpnet.operations.prune import ChannelsOff, channel_sets, describe_channels, draw_channels, evidence_on


class Flip(Operation):
    name = "flip"
    title = "Flip channels"
    summary = "Multiply feature channels by -1 for every attribute."
    shown = "For each attribute, the evidence the flipped channels carry, signed and as a share of the whole."
    formula_text = "change_k = -2 sum_{c in S} w_kc mbar_kc / sum_c |w_kc| mbar_kc"
    fields = (Field("channels", "channels", "channels flipped"),)

    def parse(self, spec: dict, view: View) -> ChannelsOff:
        spec = check_keys(spec, ("channels",), "a flip operation")
        return ChannelsOff(checked_channels(spec.get("channels"), view.channels))

    def apply(self, state: OperationState, params: ChannelsOff) -> OperationState:
        keep = state.keep.clone()
        keep[list(params.channels)] *= -1.0
        return state._replace(keep=keep)

    def card(self, view: View, params: ChannelsOff) -> Card:
        signed, share = evidence_on(view, params.channels)
        return Card(self.name, self.describe(params), {"evidence": signed, "share": share},
                    {"evidence": "evidence on the flipped channels", "share": "its share"},
                    {"channels": list(params.channels)})

    def formula(self, card: Card) -> Prediction:
        return Prediction(-2 * card.facts["evidence"], 2 * card.facts["share"])

    def describe(self, params: ChannelsOff) -> str:
        return describe_channels("flip", params.channels)

    def draw(self, rng: np.random.Generator, view: View) -> ChannelsOff:
        return ChannelsOff(draw_channels(rng, view.channels))

    def scored(self, view: View, settings) -> list:
        return [ChannelsOff(s) for s in channel_sets(view.channels, settings.groups, settings.singles, settings.seed)]


@contextmanager
def flip_registered():
    """``flip`` in OPERATIONS for the block, removed after it."""
    register(Flip)
    try:
        yield OPERATIONS.get("flip")
    finally:
        OPERATIONS.unregister("flip")
