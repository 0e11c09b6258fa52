"""The paper's regression example (Eq. 3-7) scored like a network, as a calibration of the score."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..analysis.regression import BASES, components, gram_matrix, spread
from ..core.stats import predictability_score


def regression_predictability(n_coeffs: int = 9, deltas: Sequence[float] = (-0.5, 0.5), n_boot: int = 1000,
                              seed: int = 0) -> dict:
    """The same score on the paper's regression models (Eq. 3-7), as a calibration.

    Operation: change one coefficient a_i by delta (every i, every delta). Measured: the change of
    the curve in the orthonormal components of the same function space (normalised Legendre
    polynomials for the power basis). Human-side prediction: "that basis function alone", i.e.
    component i changes by delta * ||phi_i|| and no other. Orthogonal bases (Legendre, Fourier)
    score 1; the power basis, whose x^n spreads over several components, scores less. Both sides
    are rounded to 1e-6 of their largest value (the integration error is about 1e-9), so that
    equal changes, zeros above all, tie.
    Returns ``{basis: {"score", "ci_low", "ci_high", "n", "spread"}}``.
    """
    out = {}
    for basis in BASES:
        norms = np.sqrt(np.diag(gram_matrix(basis, n_coeffs)))
        measured, predicted = [], []
        for i in range(n_coeffs):
            for d in deltas:
                measured.append(components(basis, i, float(d), n_coeffs))
                predicted.append(np.where(np.arange(n_coeffs) == i, float(d) * norms[i], 0.0))
        out[basis] = predictability_score(_snap(predicted), _snap(measured), n_boot, seed)
        out[basis]["spread"] = spread(basis, n_coeffs)
    return out


def _snap(values) -> np.ndarray:
    """Values rounded to 1e-6 of the largest magnitude, so that numerically equal values tie."""
    a = np.asarray(values, dtype=float)
    scale = np.abs(a).max() if a.size else 0.0
    return np.round(a / scale, 6) * scale if scale > 0 else a
