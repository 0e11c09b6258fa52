"""The regression example (paper Eq. 3-7): its figures and its report section."""
from __future__ import annotations

import functools

import numpy as np
from matplotlib.figure import Figure

from ..analysis.regression import regression_example
from .figures import CORR_CMAP
from .markup import figure, table

BASIS_TITLES = {"power": "naive polynomial (Eq. 3)", "legendre": "Legendre (Eq. 4-6)",
                "fourier": "Fourier (Eq. 7)"}


def fig_regression(example: dict) -> Figure:
    """Top: each basis's fit to the same data, and the curve after perturbing one coefficient.
    Bottom: the change, projected onto orthonormal components of the same function space (for the
    power basis the normalised Legendre polynomials): one bar for orthogonal bases, several for x^n.
    """
    bases = example["bases"]
    fig = Figure(figsize=(4.2 * len(bases), 7.2), layout="constrained")
    axes = np.asarray(fig.subplots(2, len(bases), squeeze=False))
    grid = np.asarray(example["grid"])
    for col, (name, b) in enumerate(bases.items()):
        ax = axes[0, col]
        ax.plot(example["x"], example["y"], ".", color="0.55", ms=4, label="data")
        ax.plot(grid, b["fit"], color="C0", lw=2, label=f"fit, RMSE {b['rmse_data']:.3f}")
        ax.plot(grid, b["perturbed"], color="C3", lw=1.6, ls="--",
                label=f"perturbed: {b['term']} {example['delta']:+g}")
        ax.set_title(f"{BASIS_TITLES.get(name, name)}, {example['n_coeffs']} coefficients", fontsize=9.5)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        _component_bars(axes[1, col], b, example["delta"])
    fig.suptitle("Regression example: perturbing one coefficient of three models", fontsize=10.5)
    return fig


def _component_bars(ax, b: dict, delta: float) -> None:
    values = np.asarray(b["components"], dtype=float)
    names = b["component_names"]
    colors = ["C3" if abs(v) > 1e-6 * max(abs(values).max(), 1e-12) else "0.6" for v in values]
    ax.bar(range(len(values)), values, color=colors)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(range(len(values)), names, fontsize=7.5, rotation=45)
    ax.set_ylabel("change of component")
    ax.set_title(f"change of {b['term']} by {delta:+g}, on orthonormal\n{b['component_basis']} "
                 f"components (spread {b['spread']:.2f})", fontsize=8.5)
    ax.grid(alpha=0.3, axis="y")


def fig_gram(example: dict) -> Figure:
    """The normalised Gram matrices <phi_i, phi_j> / (|phi_i| |phi_j|) of the bases on [-1, 1]."""
    bases = example["bases"]
    fig = Figure(figsize=(4.3 * len(bases) + 0.8, 4.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(bases)))
    for ax, (name, b) in zip(axes, bases.items()):
        g = np.asarray(b["gram_normalised"], dtype=float)
        im = ax.imshow(g, cmap=CORR_CMAP, vmin=-1, vmax=1, interpolation="nearest")
        ax.set_xticks(range(len(g)), b["term_names"], fontsize=7.5, rotation=60)
        ax.set_yticks(range(len(g)), b["term_names"], fontsize=7.5)
        ax.set_title(f"{BASIS_TITLES.get(name, name)}\nspread {b['spread']:.3f}", fontsize=9.5)
    fig.suptitle("Normalised Gram matrices on [-1, 1] (off-diagonal = coefficients that interfere)",
                 fontsize=10)
    fig.colorbar(im, ax=list(axes), shrink=0.8, pad=0.01).set_label("cosine of the angle")
    return fig


@functools.lru_cache(maxsize=1)
def regression_section() -> str:
    """The regression example's section; deterministic, so computed once per process."""
    ex = regression_example()
    rows = [(BASIS_TITLES.get(name, name), ex["n_coeffs"], f"{b['spread']:.3f}", f"{b['rmse_data']:.4f}",
             f"{b['rmse_target']:.4f}", b["term"], b["components_changed"]) for name, b in ex["bases"].items()]
    intro = (f'<p>Three models with {ex["n_coeffs"]} coefficients each, fitted by least squares to the same '
             f'{ex["n_points"]} noisy points (noise std {ex["noise_std"]}). Coefficient {ex["index"]} of each '
             f'is changed by {ex["delta"]:+g}. Spread: the mean fraction of a coefficient change that lands '
             f'on other basis components (from the normalised Gram matrix; 0 for an orthogonal basis).</p>')
    bases = table(["model", "coefficients", "spread", "RMSE to data", "RMSE to true curve",
                   "perturbed coefficient", "orthonormal components changed"], rows,
                  [False, True, True, True, True, False, True])
    return (intro + figure(fig_regression(ex), "regression example") + bases
            + figure(fig_gram(ex), "Gram matrices"))
