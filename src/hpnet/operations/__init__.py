"""Operations: changes to a trained network without retraining, each defined once.

An operation family (:class:`~.base.Operation`) defines its parameters, how it changes the model
(the heads-only function every measurement uses and the persistent form follow from one
definition), what a person is shown about it (a :class:`~.base.Card` read off the network's
:class:`~.view.View`), the formula that predicts the change from that card alone, words, and
random draws. The predictability score, ``hpnet compare``, ``hpnet serve``, the report and the
study iterate over :data:`OPERATIONS`; none of them knows an operation by name.

    from hpnet.operations import OPERATIONS, measure_operations, read_view
    view = read_view(model, other_images, "demo (attention)")
    op = OPERATIONS.get("scale")
    params = op.parse({"channels": [3, 7], "alpha": 0.5}, view)
    op.card(view, params).to_json(view.attributes)      # what a person is shown
    op.predict(view, params).change                     # the formula, (K,)
    measure_operations(model, data, [op.heads(model, params)])   # the measured change

To add a family: one module in this folder with an :class:`~.base.Operation` subclass decorated
with :func:`~.base.register`, plus its test. Every module here is imported below, so nothing else
is edited.
"""
import importlib
import pkgutil

from .base import OPERATIONS, Card, Field, Operation, Prediction, heads_under, register
from .measure import HeadsFn, measure_operations, per_std, rounded
from .prune import channel_sets
from .tone import TRANSFORMS
from .view import View, channel_usage, read_view

for _module in pkgutil.iter_modules(__path__):          # each family module registers itself
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["OPERATIONS", "TRANSFORMS", "Card", "Field", "HeadsFn", "Operation", "Prediction", "View", "channel_sets",
           "channel_usage", "heads_under", "measure_operations", "per_std", "read_view", "register", "rounded"]
