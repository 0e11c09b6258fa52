"""The regression example (paper Eq. 3-7): orthogonality, spread, perturbation, fits."""
import json

import numpy as np
import pytest

from hpnet.analysis.regression import (BASES, components, design_matrix, fit, gram_matrix, perturb, predict,
                                       regression_example, spread, term_names)
from hpnet.errors import HPNetError


@pytest.mark.parametrize("basis", ["legendre", "fourier"])
def test_orthogonal_bases_have_diagonal_gram_and_no_spread(basis):
    g = gram_matrix(basis, 9)
    off = g - np.diag(np.diag(g))
    assert np.abs(off).max() < 1e-6 * np.abs(np.diag(g)).max()
    assert spread(basis, 9) < 1e-3


def test_gram_matrices_match_closed_forms():
    n = np.arange(9)
    assert np.allclose(np.diag(gram_matrix("legendre", 9)), 2 / (2 * n + 1), atol=1e-8)
    assert np.allclose(np.diag(gram_matrix("fourier", 9)), [0.5] + [1.0] * 8, atol=1e-8)
    i, j = np.meshgrid(n, n, indexing="ij")
    power = np.where((i + j) % 2 == 0, 2 / (i + j + 1), 0.0)
    assert np.allclose(gram_matrix("power", 9), power, atol=1e-8)


def test_power_basis_spreads():
    assert spread("power", 9) > 0.1


@pytest.mark.parametrize("basis", ["legendre", "fourier"])
def test_perturbing_an_orthogonal_model_changes_one_component(basis):
    for index in range(9):
        c = components(basis, index, 0.5, 9)
        assert np.argmax(np.abs(c)) == index
        assert np.abs(np.delete(c, index)).max() < 1e-6 * abs(c[index])


def test_perturbing_the_power_model_changes_several_legendre_components():
    c = components("power", 4, 0.5, 9)                 # x^4 = a P0 + b P2 + c P4
    changed = np.flatnonzero(np.abs(c) > 1e-6)
    assert changed.tolist() == [0, 2, 4]


def test_perturb_adds_delta_times_the_basis_function():
    x = np.linspace(-1, 1, 11)
    for basis in BASES:
        coeffs = np.arange(9, dtype=float)
        change = perturb(basis, coeffs, 3, 0.25, x)
        assert np.allclose(change, 0.25 * design_matrix(basis, x, 9)[:, 3])
    with pytest.raises(HPNetError, match="index"):
        perturb("power", np.zeros(3), 3, 1.0, x)


def test_fits_use_the_same_number_of_coefficients_and_fit_well():
    ex = regression_example(n_coeffs=9, seed=1)
    for name, b in ex["bases"].items():
        assert len(b["coeffs"]) == 9 and len(b["term_names"]) == 9
        assert b["rmse_data"] < 2 * ex["noise_std"] and b["rmse_target"] < 0.1
    # the power and Legendre models span the same polynomials: the same fit, other coefficients
    assert np.allclose(ex["bases"]["power"]["fit"], ex["bases"]["legendre"]["fit"], atol=1e-8)
    assert not np.allclose(ex["bases"]["power"]["coeffs"], ex["bases"]["legendre"]["coeffs"])
    assert ex["bases"]["power"]["components_changed"] > 1
    assert ex["bases"]["fourier"]["components_changed"] == 1
    json.dumps(ex)


def test_fit_recovers_exact_coefficients():
    x = np.linspace(-1, 1, 40)
    for basis in BASES:
        true = np.linspace(1, -1, 5)
        assert np.allclose(fit(basis, x, predict(basis, true, x), 5), true, atol=1e-8)


def test_fourier_terms_and_bad_arguments():
    assert term_names("fourier", 5) == ["1/2", "cos πx", "sin πx", "cos 2πx", "sin 2πx"]
    assert design_matrix("fourier", np.zeros(2), 4).shape == (2, 4)
    with pytest.raises(HPNetError, match="basis"):
        design_matrix("chebyshev", np.zeros(2), 3)
    with pytest.raises(HPNetError, match="positive"):
        gram_matrix("power", 0)
