"""A perturbation: registered operations applied in order to one network, read from its JSON forms.

Three JSON forms are read (every key but "network" belongs to the operations):

- one operation: ``{"network": ..., "operation": "scale", "channels": [3, 7], "alpha": 0.5}`` (any
  name in :data:`~hpnet.operations.OPERATIONS`, its other keys those its ``parse`` reads);
- a list: ``{"network": ..., "operations": [{"operation": "prune", "channels": [1]}, {...}]}``;
- the legacy form ``{"network", "off": [..] | {"semantic_first": P} | {"top_of": attribute, "count":
  N}, "tone": {"all": {"n", "beta"}, attribute: {...}}, "n": [K], "beta": [K]}``: channels switched
  off, then the tone curve, i.e. the operations "prune" then "tone" (:func:`legacy_steps`, the only
  place in :mod:`hpnet.hitl` that names an operation).

A channel-set field (``kind == "channels"``) of any operation also takes the page's shortcuts
``{"semantic_first": P}`` and ``{"top_of": attribute, "count": N}``. A perturbation's normalised
form (:meth:`Perturbation.to_json`) is the one-operation form for one operation and the list form
otherwise; it reads back as the same perturbation.

How a composition acts and how it is predicted:

- its effect is the operation state after each operation's ``apply`` in turn (channel keep-mask,
  tone curve): the heads-only function measured (:meth:`Perturbation.heads`) and the exported
  model (:meth:`Perturbation.persist`) both follow from that state, as for one operation;
- its prediction applies each operation's own formula in turn (:func:`walk`): operation i is
  predicted (``op.predict``) on the view of the network *after* operations 1..i-1 (head weights
  times the keep-mask's change, the tone curve as set so far), and its change, which is in units of
  that view's total evidence, is converted to units of the network's own total evidence before
  the changes (and sizes) are summed. The summed change is the net change of the evidence; the
  summed size is the evidence moved on the way (equal to the net size when no channel's evidence
  moves back, larger otherwise, e.g. scale by 2 then switch off). One operation is predicted
  exactly as ``op.predict``; "prune then tone" gives the signed evidence change
  sum_c (keep_c w_kc g_new(m_kc) - w_kc g_own(m_kc)) / sum_c |w_kc| g_own(m_kc),
  the formula of the page before the registry.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import HPNetError
from ..model import HPNet, OperationState
from ..operations import OPERATIONS, Card, HeadsFn, Operation, Prediction, View, heads_under
from ..operations.base import checked_channels, short

MAX_STEPS = 16                       # operations in one perturbation
LEGACY_KEYS = ("off", "tone", "n", "beta")
TOP_KEYS = ("network", "operation", "operations", *LEGACY_KEYS)

# (value of a channel-set field that is not a list, the field's name) -> a list of channel ids
ChannelChoice = Callable[[Any, str], list]


@dataclass(frozen=True)
class Step:
    """One operation of a perturbation and its parameters."""

    op: Operation
    params: Any

    def to_json(self) -> dict:
        return self.op.to_json(self.params)


@dataclass(frozen=True)
class Perturbation:
    """Operations applied in order to one network (named as ``Run.network_name`` names it)."""

    network: str
    steps: tuple[Step, ...]

    def to_json(self) -> dict:
        return {"network": self.network, **self.params_json()}

    def params_json(self) -> dict:
        """The perturbation without its network: one operation's ``op.to_json``, else the list form."""
        if len(self.steps) == 1:
            return self.steps[0].to_json()
        return {"operations": [s.to_json() for s in self.steps]}

    @property
    def operation(self) -> str:
        """The operations' names joined by "+" ("none" for no operation)."""
        return "+".join(s.op.name for s in self.steps) or "none"

    def state(self, own: OperationState) -> OperationState:
        """The operation state after every operation in turn, from the network's own ``own``."""
        for s in self.steps:
            own = s.op.apply(own, s.params)
        return own

    def heads(self, model: HPNet) -> HeadsFn:
        """(z, context) -> logits after the perturbation: ``op.heads`` for one operation, the heads
        under the composed state otherwise."""
        if len(self.steps) == 1:
            return self.steps[0].op.heads(model, self.steps[0].params)
        return heads_under(model, self.state(model.operation_state()))

    def persist(self, model: HPNet) -> HPNet:
        """A copy of ``model`` with the operations built in (each ``op.persist`` in turn)."""
        out = copy.deepcopy(model) if not self.steps else model
        for s in self.steps:
            out = s.op.persist(out, s.params)
        return out


def view_under(view: View, own: OperationState, state: OperationState) -> View:
    """The view of the network after an operation state ``state`` (its own: ``own``): head weights
    times the keep-mask's change, the tone curve set as the network's own."""
    keep, base = state.keep.double().cpu(), own.keep.double().cpu()
    factor = torch.where(base != 0, keep / torch.where(base != 0, base, torch.ones_like(base)), torch.zeros_like(base))
    changes: dict[str, torch.Tensor] = {"weights": view.weights * factor.view(1, -1)}
    if state.n is not None and view.has_masks:
        changes.update(n=state.n.double().cpu(), beta=state.beta.double().cpu())
    return view.replace(**changes)


def walk(view: View, own: OperationState, steps: tuple[Step, ...]) -> Iterator[tuple[Step, View, torch.Tensor]]:
    """Each step with the view it acts on and the factor (K,) from that view's units of evidence to
    those of ``view`` (see the module's docstring)."""
    state, current, base = own, view, view.total()
    for s in steps:
        yield s, current, current.total() / base
        state = s.op.apply(state, s.params)
        current = view_under(view, own, state)


def predict(view: View, own: OperationState, steps: tuple[Step, ...]) -> Prediction:
    """The formula's prediction of the operations in turn: per attribute, the signed change and its size."""
    K = len(view.attributes)          # one step: factor 1 exactly (x / x), so op.predict itself
    change, size = torch.zeros(K, dtype=torch.float64), torch.zeros(K, dtype=torch.float64)
    for s, current, factor in walk(view, own, steps):
        p = s.op.predict(current, s.params)
        change, size = change + p.change * factor, size + p.size * factor
    return Prediction(change, size)


def cards(view: View, own: OperationState, steps: tuple[Step, ...]) -> list[Card]:
    """What a person is shown of each operation, on the view it acts on."""
    return [s.op.card(current, s.params) for s, current, _ in walk(view, own, steps)]


# -------------------------------------------------------------------------------------------- reading


def parse_steps(spec: dict, view: View, choice: ChannelChoice) -> tuple[Step, ...]:
    """The steps of a perturbation's JSON form without its "network" key (see the module's docstring)."""
    unknown = sorted(set(spec) - set(TOP_KEYS)) if "operation" not in spec else []
    if unknown:
        raise HPNetError(f"unknown key {unknown[0]!r} in the perturbation (known: {', '.join(TOP_KEYS)}, "
                         f"or an operation's keys beside \"operation\")")
    if "operation" in spec:
        return (parse_step(spec, view, choice),)
    if "operations" in spec:
        if set(spec) != {"operations"}:
            raise HPNetError("\"operations\" comes alone beside \"network\" (a list of {\"operation\": name, ...})")
        items = spec["operations"]
        if not isinstance(items, list) or len(items) > MAX_STEPS:
            raise HPNetError(f"operations must be a list of at most {MAX_STEPS} {{\"operation\": name, ...}} objects")
        steps = []
        for i, item in enumerate(items):
            try:
                steps.append(parse_step(item, view, choice))
            except HPNetError as e:
                raise HPNetError(f"operations[{i}]: {e}") from None
        return tuple(steps)
    return legacy_steps(spec, view, choice)


def parse_step(spec: Any, view: View, choice: ChannelChoice) -> Step:
    """One operation from ``{"operation": name, ...its keys}``, checked against ``view``."""
    if not isinstance(spec, dict):
        raise HPNetError("an operation must be a JSON object {\"operation\": name, ...}")
    name = spec.get("operation")
    if not isinstance(name, str) or name not in OPERATIONS:
        raise HPNetError(f"operation must be one of {', '.join(OPERATIONS.names())}, got {short(name)}")
    op = OPERATIONS.get(name)
    op.check_applies(view)
    rest = {k: v for k, v in spec.items() if k != "operation"}
    for f in op.fields:
        if f.kind == "channels" and isinstance(rest.get(f.name), dict):
            rest[f.name] = choice(rest[f.name], f.name)
    return Step(op, op.parse(rest, view))


def legacy_steps(spec: dict, view: View, choice: ChannelChoice) -> tuple[Step, ...]:
    """The legacy form: channels "off" (the operation "prune"), then the tone curve ("tone") given as
    "tone" ({"all" | attribute: {"n", "beta"}}) or as "n"/"beta" (one value per attribute)."""
    prune, tone = OPERATIONS.get("prune"), OPERATIONS.get("tone")
    steps = []
    off = spec.get("off", [])
    off = choice(off, "off") if isinstance(off, dict) else off
    channels = checked_channels(off, view.channels, "off", allow_empty=True)
    if channels:
        steps.append(Step(prune, prune.parse({"channels": list(channels)}, view)))
    curve = spec.get("tone")
    if curve is not None and not isinstance(curve, dict):
        raise HPNetError("tone must be an object: {\"all\": {\"n\": 2, \"beta\": 0.2}, \"<attribute>\": {...}}")
    lists = {k: spec[k] for k in ("n", "beta") if k in spec}
    if curve and lists:
        raise HPNetError("give the tone curve as \"tone\" or as \"n\" and \"beta\" lists, not both")
    if lists and not view.has_masks and lists == {k: getattr(view, k).tolist() for k in lists}:
        lists = {}                      # a plain CNN's "own curve" in the legacy normalised form: no change
    if curve or lists:
        if not tone.applies_to(view):
            raise HPNetError(f"the {view.network} network has no attention masks: a tone curve cannot be set on it")
        steps.append(Step(tone, tone.parse({"curves": curve} if curve else lists, view)))
    return tuple(steps)
