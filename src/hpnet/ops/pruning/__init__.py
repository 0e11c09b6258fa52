"""Semantic channel pruning (paper Fig. 3, 6, 7), its baselines, and physical pruning.

The operation acts on the C channels of z = f_f(x), the input of every attention head:

1. :mod:`.scorers`: an order of the channels per method (the registry ``SCORERS``): the semantic
   scan of a C x C channel correlation (by default of what each channel contributes to the
   classifiers' logits, ``correlation="contributions"``; the paper's Fig. 6 correlation of the
   features over every position is ``"features"``), random orders, filter L1 magnitude and
   least-attended channels first;
2. :mod:`.curves`: mean accuracy after pruning the first P channels of each order (Fig. 7), each
   pruned model as it is and with its classifiers reconstructed (:mod:`.refit`: least squares to
   the original logits on training images);
3. :mod:`.apply`: a smaller model without the pruned channels, equal in output to the masked model;
4. :mod:`.prune`: all of it for a trained model (:func:`prune_model`, settings :class:`PruneSettings`
   in parts: :class:`ScanSettings` for the orders, :class:`CurveSettings` for the curves);
   the ``prune`` command (:func:`hpnet.commands.prune_run`) runs it on a run folder.
"""
from .apply import masked_model, mean_accuracy, physical_report, prunable, prune_physical
from .curves import CurveSettings, default_grid, pruning_curves
from .prune import Pruned, PruneSettings, prune_model
from .refit import HeadFit, reconstruct_heads
from .scorers import (
                      RULES,
                      SCORERS,
                      ScanInputs,
                      ScanSettings,
                      ScorerSkipped,
                      attention_order,
                      filter_l1,
                      l1_order,
                      method_orders,
                      random_order,
                      scorer,
                      semantic_order,
)

__all__ = ["RULES", "SCORERS", "CurveSettings", "HeadFit", "PruneSettings", "Pruned", "ScanInputs", "ScanSettings",
           "ScorerSkipped", "attention_order", "default_grid", "filter_l1", "l1_order", "masked_model", "mean_accuracy",
           "method_orders", "physical_report", "prunable", "prune_model", "prune_physical", "pruning_curves",
           "random_order", "reconstruct_heads", "scorer", "semantic_order"]
