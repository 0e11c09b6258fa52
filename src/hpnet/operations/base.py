"""What every operation family defines, once, and what follows from it for all of them.

An operation changes a trained network without retraining. Each family (:class:`Operation`)
defines:

- ``Params``: its parameters, a frozen dataclass with ``to_json`` (and :meth:`Operation.parse`
  reading the JSON form back, with one-line errors);
- :meth:`Operation.apply`: the change it makes to the model's operation state (the channel
  keep-mask, the tone curve per attribute). The heads-only function every measurement uses
  (:meth:`Operation.heads`) and the persistent form (:meth:`Operation.persist`) both follow from
  it, so they cannot disagree;
- :meth:`Operation.card`: what a person is shown about it, facts read off the network's
  :class:`~.view.View`; :meth:`Operation.formula`: the signed change per attribute (and its size)
  predicted from the card alone;
- words (``title``, ``summary``, ``formula_text``, :meth:`Operation.describe`), the page's
  controls (``fields``), a random draw for trials (:meth:`Operation.draw`) and the set the
  predictability score measures (:meth:`Operation.scored`).
"""
from __future__ import annotations

import copy
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch

from ..errors import HPNetError
from ..model import HPNet, OperationState
from ..registry import Registry
from .measure import HeadsFn
from .view import View


class Prediction(NamedTuple):
    """The formula's prediction per attribute, in units of the attribute's evidence."""

    change: torch.Tensor              # (K,) signed change of the logit
    size: torch.Tensor                # (K,) how much of the evidence is moved, summed over channels


@dataclass(frozen=True)
class Card:
    """What a person is shown about one operation on one network.

    ``facts`` hold one value per attribute ((K,) tensors) or one row per attribute ((K, C) tensors:
    the Fig. 5 row and head weights the formula sums over); ``common`` holds facts about the
    operation itself (its channels, its curve). ``labels`` say in words what each fact is.
    """

    operation: str
    description: str
    facts: dict[str, torch.Tensor]
    labels: dict[str, str]
    common: dict[str, Any] = field(default_factory=dict)

    def to_json(self, attributes: Sequence[str], index: Sequence[int] | None = None) -> dict:
        """The card for the attributes at ``index`` (default all), as the page and the study show it."""
        index = list(range(len(attributes))) if index is None else list(index)
        rows = [{"attribute": attributes[k], **{name: _plain(v[k]) for name, v in self.facts.items()}}
                for k in index]
        return {"operation": self.operation, "description": self.description, "labels": self.labels,
                "common": self.common, "attributes": rows}


def _plain(value: torch.Tensor):
    return float(value) if value.dim() == 0 else [round(float(v), 6) for v in value.tolist()]


@dataclass(frozen=True)
class Field:
    """One control of the operation on the page: ``kind`` is "channels" (a set of channel ids),
    "number" (``low``..``high`` in ``step``), "attributes" ("all" or a list of attribute names) or
    "choice" (one of ``choices``)."""

    name: str
    kind: str
    label: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    default: Any = None
    choices: tuple[str, ...] = ()


class Operation(ABC):
    """An operation family; subclasses fill the class attributes and the abstract methods."""

    name: ClassVar[str]
    title: ClassVar[str]                 # a few words: "Switch channels off"
    summary: ClassVar[str]               # what it does, in a sentence
    shown: ClassVar[str]                 # what a person is shown about it, in a sentence
    formula_text: ClassVar[str]          # the formula, in words and symbols
    needs_masks: ClassVar[bool] = False
    score_on: ClassVar[str] = "change"   # the score ranks "change" (signed) or "size" (|change|)
    shared_predictor: ClassVar[str | None] = None   # a variant of :meth:`predictors` defined alike for every network
    fields: ClassVar[tuple[Field, ...]] = ()

    # -- defined by each family ---------------------------------------------------------------

    @abstractmethod
    def parse(self, spec: dict, view: View) -> Any:
        """``Params`` from the JSON form (without its "operation" key), checked against ``view``."""

    @abstractmethod
    def apply(self, state: OperationState, params: Any) -> OperationState:
        """The operation state of a model after the operation (a new state; ``state`` unchanged)."""

    @abstractmethod
    def card(self, view: View, params: Any) -> Card:
        """What a person is shown about the operation on the network of ``view``."""

    @abstractmethod
    def formula(self, card: Card) -> Prediction:
        """The predicted change per attribute, from the card alone."""

    @abstractmethod
    def describe(self, params: Any) -> str:
        """The operation in words, as a trial shows it."""

    @abstractmethod
    def draw(self, rng: np.random.Generator, view: View) -> Any:
        """A random operation of the family the score measures, for a trial."""

    @abstractmethod
    def scored(self, view: View, settings: Any) -> list:
        """The operations the predictability score measures (chosen without looking at the network:
        networks of the same width get the same ones). ``settings``: the score's settings."""

    def predictors(self, view: View) -> dict[str, View]:
        """Views for the score's variants of the formula (the first is the primary one)."""
        return {"mask_x_weight" if view.has_masks else "weight_x_activation": view}

    # -- what follows for every family --------------------------------------------------------

    def applies_to(self, view_or_model: View | HPNet) -> bool:
        return view_or_model.has_masks or not self.needs_masks

    def check_applies(self, view: View) -> None:
        if not self.applies_to(view):
            raise HPNetError(f"{self.name}: the {view.network} network has no masks, so it cannot be "
                             f"{self.title.lower()}")

    def to_json(self, params: Any) -> dict:
        return {"operation": self.name, **params.to_json()}

    def predict(self, view: View, params: Any) -> Prediction:
        return self.formula(self.card(view, params))

    def heads(self, model: HPNet, params: Any) -> HeadsFn:
        """(z, context) -> logits of the model after the operation: the heads alone, on features z
        computed with the model's own state."""
        return heads_under(model, self.apply(model.operation_state(), params))

    def persist(self, model: HPNet, params: Any) -> HPNet:
        """A copy of ``model`` with the operation made part of it (saved and exported as it is)."""
        changed = copy.deepcopy(model)
        changed.set_operation_state(self.apply(model.operation_state(), params))
        return changed


OPERATIONS: Registry[Operation] = Registry("operation")


def register(family: type[Operation]) -> type[Operation]:
    """Class decorator: one instance of ``family`` in :data:`OPERATIONS` under its ``name``."""
    OPERATIONS.register(family.name)(family())
    return family


def heads_under(model: HPNet, state: OperationState) -> HeadsFn:
    """The heads with ``state`` instead of the model's own, on features z computed with its own."""
    own = model.operation_state()
    keep = own.keep.to(model.channel_keep.device)
    scale = torch.where(keep != 0, state.keep.to(keep.device) / torch.where(keep != 0, keep, 1.0),
                        torch.zeros_like(keep)).view(1, -1, 1, 1)
    rescale = not bool((scale == 1).all())
    retone = model.has_masks and not (torch.equal(state.n, own.n) and torch.equal(state.beta, own.beta))
    n = state.n.view(1, -1) if retone else None
    beta = state.beta.view(1, -1) if retone else None

    def run(z: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        z = z * scale.to(z.device) if rescale else z
        if retone:
            return model.heads.logits_under(z, n.to(z.device), beta.to(z.device), context)[0]
        return model.heads(z, context)[0]
    return run


def checked_number(value: Any, name: str, low: float, high: float, where: str = "") -> float:
    """``value`` as a float in [low, high], or a one-line error naming it."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise HPNetError(f"{where}{name} must be a number in [{low:g}, {high:g}], got {short(value)}")
    return float(value)


def checked_channels(value: Any, channels: int, name: str = "channels", allow_empty: bool = False) -> tuple[int, ...]:
    """A list of distinct channel ids in 0..C-1, sorted; one-line errors."""
    if not isinstance(value, list) or (not value and not allow_empty):
        raise HPNetError(f"{name} must be a {'' if allow_empty else 'non-empty '}list of channel ids in 0..{channels - 1}")
    for c in value:
        if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < channels:
            raise HPNetError(f"{name}: a channel must be an id in 0..{channels - 1}, got {short(c)}")
    if len(set(value)) != len(value):
        raise HPNetError(f"{name}: a channel is listed twice")
    return tuple(sorted(value))


def check_keys(spec: Any, known: Sequence[str], what: str) -> dict:
    """``spec`` as a dict with no key outside ``known``; one-line errors."""
    if not isinstance(spec, dict):
        raise HPNetError(f"{what} must be a JSON object with {', '.join(known)}")
    unknown = sorted(set(spec) - set(known))
    if unknown:
        raise HPNetError(f"unknown key {unknown[0]!r} in {what} (known: {', '.join(known)})")
    return spec


def short(value: Any) -> str:
    """A value as JSON shows it, cut to 40 characters (for one-line error messages)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
