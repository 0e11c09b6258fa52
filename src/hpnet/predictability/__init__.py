"""Human predictability as a number: how well a person's prediction of an operation's effect matches it.

The paper defines the human predictability of a model-operation pair as how easily a person can
predict the change of the inference when the model is perturbed, but never measures it. Here:

1. A *human-side prediction* is computed only from what a person sees, one number per
   (attribute, operation) pair: each operation's card and formula (:mod:`hpnet.operations`).
2. The *measured change* of the same pair after applying the operation, on evaluation images
   (:func:`hpnet.operations.measure_operations`).
3. The *score* is Spearman's rank correlation between predicted and measured change over all pairs,
   with a percentile bootstrap interval (:func:`hpnet.core.stats.predictability_score`).

Further: :mod:`.localisation` (attention masks and what the classifier pools against the post-hoc
explainers of :mod:`.explainers`, on synthetic faces, which know where each attribute's evidence lies) and
:mod:`.calibration` (the paper's regression example scored the same way). :mod:`.score` puts it all
together, one pipeline for any number of networks over every registered operation; the ``predictability`` command
(:func:`hpnet.commands.predictability_run`) runs it on a run folder.
"""
from ..core.stats import average_ranks, mean_ci, predictability_score, spearman, within_attribute_score
from .calibration import regression_predictability
from .explainers import (
                         BACKENDS,
                         EXPLAINERS,
                         captum_available,
                         gradcam_maps,
                         permutation_maps,
                         resolve_backend,
                         saliency_maps,
)
from .localisation import METHODS, attention_maps, energy_fraction, localisation, pooled_maps
from .score import DEFINITION, PredictabilitySettings, role_consistency, score_network, score_networks, score_operations

__all__ = ["BACKENDS", "DEFINITION", "EXPLAINERS", "METHODS", "PredictabilitySettings", "attention_maps",
           "average_ranks", "captum_available", "energy_fraction", "gradcam_maps", "localisation", "mean_ci",
           "permutation_maps", "pooled_maps", "predictability_score", "regression_predictability", "resolve_backend",
           "role_consistency", "saliency_maps", "score_network", "score_networks", "score_operations", "spearman",
           "within_attribute_score"]
