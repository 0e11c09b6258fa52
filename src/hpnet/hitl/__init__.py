"""A person in the loop: look at a trained run, perturb it, predict, then see, and be scored.

:class:`Workbench` holds a run's networks with the features of an evaluation subset cached, so that
every perturbation (:class:`Perturbation`: channels switched off, a tone curve per attribute) is a
heads-only pass; :class:`TrialDesk` proposes trials and logs the committed predictions;
:mod:`.app` serves both as one local page (``hpnet serve``). The trial log and its score are
:mod:`hpnet.predictability.human`'s.
"""
from .trials import TrialDesk
from .workbench import Network, Perturbation, Workbench

__all__ = ["Network", "Perturbation", "TrialDesk", "Workbench"]
