"""A person in the loop: look at a trained run, perturb it, predict, then see, and be scored.

:class:`Workbench` holds a run's networks with the features of an evaluation subset cached, so that
every :class:`Perturbation` (registered operations of :mod:`hpnet.operations` applied in order) is
a heads-only pass; :class:`TrialDesk` proposes trials and logs the committed predictions;
:mod:`.app` serves both as one local page (``hpnet serve``). The trial log and its score are
:mod:`hpnet.predictability.human`'s.
"""
from .network import Network
from .perturbation import Perturbation, Step
from .trials import TrialDesk
from .workbench import Workbench

__all__ = ["Network", "Perturbation", "Step", "TrialDesk", "Workbench"]
