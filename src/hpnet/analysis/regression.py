"""The paper's regression example of human predictability (Eq. 3-7).

Three models with the same number of coefficients are fitted by least squares to the same noisy
data on [-1, 1]:

- ``"power"``: the naive polynomial sum_n a_n x^n (Eq. 3);
- ``"legendre"``: sum_n a_n P_n(x), Legendre polynomials (Eq. 4-6), orthogonal on [-1, 1];
- ``"fourier"``: a_0 / 2 + sum_n a_n cos(pi n x) + b_n sin(pi n x) (Eq. 7), orthogonal on [-1, 1].
  Its coefficients are ordered a_0, a_1, b_1, a_2, b_2, ...; 9 coefficients is N = 4.

Perturbing one coefficient adds delta * phi_i(x) to the curve. For an orthogonal basis that change
lies along one component only; for the power basis it overlaps several: x^4 has components along
P_0, P_2 and P_4. :func:`spread` turns this into one number from the basis's Gram matrix.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import HPNetError

BASES = ("power", "legendre", "fourier")


def _check(basis: str, n_coeffs: int) -> None:
    if basis not in BASES:
        raise HPNetError(f"basis must be one of {', '.join(BASES)}, got {basis!r}")
    if n_coeffs < 1:
        raise HPNetError(f"the number of coefficients must be positive, got {n_coeffs}")


def _legendre(x: np.ndarray, n_coeffs: int) -> np.ndarray:
    """P_0 .. P_{n-1} at x by Bonnet's recurrence (n + 1) P_{n+1} = (2n + 1) x P_n - n P_{n-1}."""
    cols = [np.ones_like(x), x]
    for n in range(1, n_coeffs - 1):
        cols.append(((2 * n + 1) * x * cols[n] - n * cols[n - 1]) / (n + 1))
    return np.stack(cols[:n_coeffs], axis=1)


def _fourier(x: np.ndarray, n_coeffs: int) -> np.ndarray:
    """Columns 1/2, cos(pi x), sin(pi x), cos(2 pi x), sin(2 pi x), ... (the first n_coeffs)."""
    cols = [np.full_like(x, 0.5)]
    for n in range(1, n_coeffs // 2 + 1):
        cols += [np.cos(np.pi * n * x), np.sin(np.pi * n * x)]
    return np.stack(cols[:n_coeffs], axis=1)


def design_matrix(basis: str, x: np.ndarray, n_coeffs: int) -> np.ndarray:
    """Phi (len(x), n_coeffs): column i is the i-th basis function at x."""
    _check(basis, n_coeffs)
    x = np.asarray(x, dtype=float)
    if basis == "power":
        return x[:, None] ** np.arange(n_coeffs)[None, :]
    if basis == "legendre":
        return _legendre(x, n_coeffs)
    return _fourier(x, n_coeffs)


def term_names(basis: str, n_coeffs: int) -> list[str]:
    """Readable names of the basis functions: "x^2", "P2", "cos 2πx"."""
    _check(basis, n_coeffs)
    if basis == "power":
        return ["1" if n == 0 else "x" if n == 1 else f"x^{n}" for n in range(n_coeffs)]
    if basis == "legendre":
        return [f"P{n}" for n in range(n_coeffs)]
    names = ["1/2"]
    for n in range(1, n_coeffs // 2 + 1):
        k = "" if n == 1 else str(n)
        names += [f"cos {k}πx", f"sin {k}πx"]
    return names[:n_coeffs]


def coefficient_names(basis: str, n_coeffs: int) -> list[str]:
    """Coefficient names as in Eq. 3-7: a0 .. a8, or a0, a1, b1, a2, b2, ... for Fourier."""
    if basis != "fourier":
        return [f"a{n}" for n in range(n_coeffs)]
    names = ["a0"]
    for n in range(1, n_coeffs // 2 + 1):
        names += [f"a{n}", f"b{n}"]
    return names[:n_coeffs]


def fit(basis: str, x: np.ndarray, y: np.ndarray, n_coeffs: int) -> np.ndarray:
    """Least-squares coefficients (n_coeffs,) of the basis for the data (x, y)."""
    phi = design_matrix(basis, x, n_coeffs)
    coeffs, *_ = np.linalg.lstsq(phi, np.asarray(y, dtype=float), rcond=None)
    return coeffs


def predict(basis: str, coeffs: np.ndarray, x: np.ndarray) -> np.ndarray:
    return design_matrix(basis, x, len(coeffs)) @ np.asarray(coeffs, dtype=float)


def simpson(points: int = 2001) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and composite-Simpson weights on [-1, 1] (``points`` rounded up to an odd number).

    Simpson's rule is exact for cubics per panel, so the polynomial Gram entries here are accurate
    to about 1e-12; on a whole period it is exact for the low-frequency Fourier terms.
    """
    points = max(3, points + (points % 2 == 0))
    x = np.linspace(-1.0, 1.0, points)
    h = x[1] - x[0]
    w = np.full(points, 2.0)
    w[1::2] = 4.0
    w[0] = w[-1] = 1.0
    return x, w * h / 3.0


def gram_matrix(basis: str, n_coeffs: int, points: int = 2001) -> np.ndarray:
    """G_ij = integral over [-1, 1] of phi_i(x) phi_j(x) dx (composite Simpson, ``points`` nodes)."""
    x, w = simpson(points)
    phi = design_matrix(basis, x, n_coeffs)
    return phi.T @ (phi * w[:, None])


def normalised_gram(gram: np.ndarray) -> np.ndarray:
    """R_ij = G_ij / sqrt(G_ii G_jj): the cosine of the angle between basis functions i and j."""
    d = np.sqrt(np.diag(gram))
    return gram / np.outer(d, d)


def spread(basis: str, n_coeffs: int, points: int = 2001) -> float:
    """How far a change of one coefficient spreads into the other basis components.

    Changing coefficient i by delta adds delta * phi_i to the curve; its inner product with basis
    function j changes by delta * G_ij. With R the normalised Gram matrix (cosines between basis
    functions), the spread is the mean over i of sum_{j != i} |R_ij| / sum_j |R_ij|: the fraction
    of a coefficient change that lands on other components. It is 0 for an orthogonal basis
    (Legendre, Fourier) and about 0.74 for the power basis with 9 coefficients.
    """
    r = np.abs(normalised_gram(gram_matrix(basis, n_coeffs, points)))
    off = r.sum(1) - np.diag(r)
    return float(np.mean(off / r.sum(1)))


def perturb(basis: str, coeffs: np.ndarray, index: int, delta: float, x: np.ndarray) -> np.ndarray:
    """The change of the fitted curve at x when coefficient ``index`` changes by ``delta``."""
    coeffs = np.asarray(coeffs, dtype=float)
    if not 0 <= index < len(coeffs):
        raise HPNetError(f"coefficient index must be in 0..{len(coeffs) - 1}, got {index}")
    changed = coeffs.copy()
    changed[index] += delta
    return predict(basis, changed, x) - predict(basis, coeffs, x)


def orthonormal_basis(basis: str) -> str:
    """The orthogonal basis spanning the same functions: Gram-Schmidt of 1, x, x^2, ... is Legendre."""
    return "fourier" if basis == "fourier" else "legendre"


def components(basis: str, index: int, delta: float, n_coeffs: int, points: int = 2001) -> np.ndarray:
    """The change delta * phi_index projected onto the orthonormal components of the same space.

    For the power basis these are the normalised Legendre polynomials, so x^4 changes P0, P2, P4;
    for Legendre and Fourier they are the basis's own normalised functions, so only one changes.
    """
    x, w = simpson(points)
    target = orthonormal_basis(basis)
    e = design_matrix(target, x, n_coeffs)
    e = e / np.sqrt((e * e * w[:, None]).sum(0))                      # unit norm on [-1, 1]
    change = delta * design_matrix(basis, x, n_coeffs)[:, index]
    return e.T @ (change * w)


def default_target(x: np.ndarray) -> np.ndarray:
    """A smooth curve all three models can fit: cos(2.5 x) + 0.5 x^2 + 0.3 sin(pi x).

    It takes the same value at -1 and 1, so the periodic Fourier model fits it without a jump.
    """
    return np.cos(2.5 * x) + 0.5 * x ** 2 + 0.3 * np.sin(np.pi * x)


def regression_example(n_coeffs: int = 9, seed: int = 0, index: int | None = None, delta: float = 0.5,
                       n_points: int = 60, noise_std: float = 0.1,
                       target: Callable[[np.ndarray], np.ndarray] = default_target) -> dict:
    """Fit the three models to the same noisy data and perturb coefficient ``index`` of each.

    ``index`` defaults to the middle coefficient (4 of 9: x^4, P4 and b2). Returns plain lists and
    numbers (JSON-ready): the data, a plotting grid, and per basis the coefficients, the fit and the
    perturbed fit on the grid, RMSE against the data and the noise-free target, the Gram matrix,
    its normalised form, the spread and the change's orthonormal components.
    """
    index = n_coeffs // 2 if index is None else index
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-1.0, 1.0, n_points))
    y = target(x) + noise_std * rng.standard_normal(n_points)
    grid = np.linspace(-1.0, 1.0, 201)
    out = {"n_coeffs": n_coeffs, "seed": seed, "index": index, "delta": delta, "noise_std": noise_std,
           "n_points": n_points, "x": x.tolist(), "y": y.tolist(), "grid": grid.tolist(),
           "target": target(grid).tolist(), "bases": {}}
    for basis in BASES:
        out["bases"][basis] = _basis_example(basis, x, y, grid, target(grid), n_coeffs, index, delta)
    return out


def _basis_example(basis: str, x: np.ndarray, y: np.ndarray, grid: np.ndarray, truth: np.ndarray,
                   n_coeffs: int, index: int, delta: float) -> dict:
    coeffs = fit(basis, x, y, n_coeffs)
    curve = predict(basis, coeffs, grid)
    gram = gram_matrix(basis, n_coeffs)
    names = term_names(basis, n_coeffs)
    comps = components(basis, index, delta, n_coeffs)
    return {
        "coeffs": coeffs.tolist(), "coefficient_names": coefficient_names(basis, n_coeffs),
        "term_names": names, "term": f"{coefficient_names(basis, n_coeffs)[index]} ({names[index]})",
        "fit": curve.tolist(), "perturbed": (curve + perturb(basis, coeffs, index, delta, grid)).tolist(),
        "rmse_data": float(np.sqrt(np.mean((predict(basis, coeffs, x) - y) ** 2))),
        "rmse_target": float(np.sqrt(np.mean((curve - truth) ** 2))),
        "gram": gram.tolist(), "gram_normalised": normalised_gram(gram).tolist(),
        "spread": spread(basis, n_coeffs), "components": comps.tolist(),
        "component_basis": orthonormal_basis(basis).capitalize(),
        "component_names": term_names(orthonormal_basis(basis), n_coeffs),
        "components_changed": int((np.abs(comps) > 1e-6 * np.abs(comps).max()).sum()),
    }
