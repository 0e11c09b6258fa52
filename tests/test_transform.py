"""g(M; n, beta) and h(M; n) of Eq. 11-12 against hand-computed values and their stated properties."""
import pytest
import torch

from hpnet import mask_transform
from hpnet.core.tone import tone_curve

M = torch.linspace(0, 1, 101, dtype=torch.float64)


@pytest.mark.parametrize("m, n, expected", [
    (0.1, 2, 0.5 * 0.2 ** 2),          # (M / 0.5)^n / 2 below 0.5
    (0.25, 3, 0.5 * 0.5 ** 3),
    (0.6, 2, 1 - 0.5 * 0.8 ** 2),      # 1 - ((1 - M) / 0.5)^n / 2 above 0.5
    (0.9, 0.5, 1 - 0.5 * 0.2 ** 0.5),
    (0.5, 4, 0.5),
    (0.0, 2, 0.0),
    (1.0, 2, 1.0),
])
def test_h_by_hand(m, n, expected):
    assert float(tone_curve(torch.tensor(m, dtype=torch.float64), n)) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("m, n, beta, expected", [
    (0.1, 2, 0.5, 1.5 * 0.02 - 0.5),
    (0.6, 2, 0.2, 1.2 * 0.68 - 0.2),
    (0.5, 3, 0.5, 0.25),
    (1.0, 4, 0.5, 1.0),                 # g keeps 1 at 1 for every beta
])
def test_g_by_hand(m, n, beta, expected):
    got = mask_transform(torch.tensor(m, dtype=torch.float64), n, beta)
    assert float(got) == pytest.approx(expected, abs=1e-12)


def test_identity_at_n_1_beta_0():
    torch.testing.assert_close(mask_transform(M, 1.0, 0.0), M, rtol=0, atol=1e-15)


@pytest.mark.parametrize("n", [0.5, 1.0, 2.0, 4.0])
def test_h_is_symmetric_about_one_half(n):
    torch.testing.assert_close(tone_curve(1 - M, n), 1 - tone_curve(M, n))


@pytest.mark.parametrize("n, beta", [(0.5, 0.0), (2.0, 0.0), (4.0, 0.2), (2.0, 0.5)])
def test_g_is_monotone_in_m(n, beta):
    g = mask_transform(M, n, beta)
    assert (g[1:] - g[:-1] >= 0).all() and (g[1:] - g[:-1]).sum() > 0


def test_n_above_one_pushes_values_away_from_one_half_and_beta_suppresses():
    low, high = torch.tensor(0.3), torch.tensor(0.7)
    assert tone_curve(low, 2) < low and tone_curve(high, 2) > high
    assert mask_transform(low, 1, 0.3) < low  # beta lowers every value below 1


def test_per_attribute_parameters_broadcast():
    m = torch.full((2, 3, 4), 0.3)
    n = torch.tensor([1.0, 2.0, 4.0]).view(1, 3, 1)
    beta = torch.tensor([0.0, 0.0, 0.5]).view(1, 3, 1)
    out = mask_transform(m, n, beta)
    torch.testing.assert_close(out[:, 0], m[:, 0])
    torch.testing.assert_close(out[:, 1], torch.full((2, 4), 0.5 * 0.6 ** 2))
    torch.testing.assert_close(out[:, 2], torch.full((2, 4), 1.5 * 0.5 * 0.6 ** 4 - 0.5))
