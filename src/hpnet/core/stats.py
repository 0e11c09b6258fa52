"""Rank statistics with bootstrap intervals: the score behind every human-predictability number.

:func:`predictability_score` is Spearman's rank correlation between predicted and measured changes
(ties get average ranks) with a percentile bootstrap interval over the pairs; :func:`mean_ci` is a
mean with the same kind of interval. :func:`cluster_bootstrap_spearman` is Spearman's rho in resamples
of whole clusters of pairs (the trials of ``hpnet serve``), computed from each resample's weights
(:class:`ResampleRanks`, :func:`resampled_spearman`). Pure numpy; nothing here knows the network.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..errors import HPNetError


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis; tied values share the mean of their ranks."""
    a = np.asarray(values, dtype=float)
    n = a.shape[-1]
    order = np.argsort(a, axis=-1, kind="stable")
    s = np.take_along_axis(a, order, axis=-1)
    idx = np.broadcast_to(np.arange(n), s.shape)
    starts = np.ones(s.shape, dtype=bool)
    starts[..., 1:] = s[..., 1:] != s[..., :-1]
    ends = np.ones(s.shape, dtype=bool)
    ends[..., :-1] = starts[..., 1:]
    first = np.maximum.accumulate(np.where(starts, idx, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, idx, n - 1), -1), axis=-1), -1)
    ranks = np.empty(s.shape)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=-1)
    return ranks


def spearman(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Spearman's rho along the last axis (Pearson r of average ranks); NaN where one side is constant."""
    ra, rb = average_ranks(predicted), average_ranks(measured)
    ra = ra - ra.mean(-1, keepdims=True)
    rb = rb - rb.mean(-1, keepdims=True)
    den = np.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def predictability_score(predicted, measured, n_boot: int = 1000, seed: int = 0,
                         level: float = 0.95) -> dict:
    """Human predictability of a model-operation pair: Spearman rho of predicted vs measured change.

    ``predicted`` and ``measured`` hold one number per (attribute, operation) pair, in any matching
    shape; pairs where either is NaN are left out. The confidence interval is the percentile
    bootstrap (``n_boot`` resamples of the pairs with replacement, seeded by ``seed``) at ``level``.
    Returns ``{"score", "ci_low", "ci_high", "n"}``; the score is NaN with fewer than 3 pairs or
    when either side is constant.
    """
    p = np.asarray(predicted, dtype=float).ravel()
    m = np.asarray(measured, dtype=float).ravel()
    if p.shape != m.shape:
        raise HPNetError(f"predicted and measured must have the same size, got {p.size} and {m.size}")
    keep = np.isfinite(p) & np.isfinite(m)
    p, m = p[keep], m[keep]
    n = int(p.size)
    if n < 3:
        return {"score": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": n}
    boots = _bootstrap(lambda idx: spearman(p[idx], m[idx]), n, n_boot, seed)
    low, high = _percentiles(boots, level)
    return {"score": float(spearman(p, m)), "ci_low": low, "ci_high": high, "n": n}


def within_attribute_score(predicted, measured, n_boot: int = 1000, seed: int = 0) -> dict:
    """Mean over attributes of Spearman's rho across operations, with a bootstrap interval over attributes.

    predicted, measured: (O, K). Unlike :func:`predictability_score` it ignores how the attributes
    compare with each other: can a person tell which operations change attribute k most?
    Attributes with a constant or non-finite column are left out.
    """
    p = np.asarray(predicted, dtype=float).T                             # (K, O)
    m = np.asarray(measured, dtype=float).T
    rho = spearman(p, m) if p.shape[-1] >= 3 else np.full(p.shape[0], np.nan)
    rho = np.where(np.isfinite(p).all(-1) & np.isfinite(m).all(-1), rho, np.nan)
    return mean_ci(rho, n_boot, seed)


def mean_ci(values, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean of ``values`` (NaN left out) with a percentile bootstrap interval: {"score", "ci_low", "ci_high", "n"}."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"score": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0}
    boots = _bootstrap(lambda idx: v[idx].mean(-1), v.size, n_boot, seed)
    low, high = _percentiles(boots, level)
    return {"score": float(v.mean()), "ci_low": low, "ci_high": high, "n": int(v.size)}


def _bootstrap(stat: Callable[[np.ndarray], np.ndarray], n: int, n_boot: int, seed: int,
               block_elements: int = 1 << 21) -> np.ndarray:
    """``stat`` of ``n_boot`` resamples of indices 0..n-1, evaluated in blocks of rows."""
    rng = np.random.default_rng(seed)
    rows = max(1, block_elements // max(n, 1))
    out = [stat(rng.integers(0, n, size=(min(rows, n_boot - i), n))) for i in range(0, n_boot, rows)]
    return np.concatenate(out) if out else np.zeros(0)


def _percentiles(boots: np.ndarray, level: float) -> tuple[float, float]:
    boots = boots[np.isfinite(boots)]
    if boots.size == 0:
        return math.nan, math.nan
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(boots, [tail, 100.0 - tail])
    return float(low), float(high)


class ResampleRanks:
    """The mid-ranks of a sample's values within resamples of its clusters, without sorting again.

    ``owner[i]`` is the cluster of value ``i``; a resample is a count per cluster (how many times it
    was drawn), so each value counts with its cluster's count. The rank of a value in the resample is
    the total count of the smaller values plus (the count of its equal values + 1) / 2.
    """

    def __init__(self, values: np.ndarray, owner: np.ndarray):
        _, group, ties = np.unique(np.asarray(values, dtype=float), return_inverse=True, return_counts=True)
        group = group.ravel()                                             # the distinct value of each value
        self.owner = np.asarray(owner)
        self.owner_sorted = self.owner[np.argsort(group, kind="stable")]
        tied = ties.size < group.size
        self.starts = np.concatenate([[0], np.cumsum(ties)[:-1]]) if tied else None   # of each distinct value
        self.group = group if tied or np.any(np.diff(group) < 0) else None          # None: sorted, no ties

    def centered(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per resample (rows of ``counts``, float, one column per cluster): each value's rank less the
        mean rank, (B, n), and the counted sum of squared deviations of the ranks, (B,)."""
        weights = np.take(counts, self.owner_sorted, axis=1)             # in sorted order
        if self.starts is not None:                                       # the count of each distinct value
            weights = np.add.reduceat(weights, self.starts, axis=1)
        through = np.cumsum(weights, axis=1)                              # the count up to each distinct value
        total = through[:, -1].copy()
        spread = (total ** 3 - np.einsum("bi,bi->b", weights * weights, weights)) / 12.0
        through -= 0.5 * weights                                          # mid-rank: through - (w - 1) / 2
        through -= (total / 2.0)[:, None]                                 # less the mean rank (total + 1) / 2
        return (through if self.group is None else np.take(through, self.group, axis=1)), spread


def resampled_spearman(predicted: dict[str, ResampleRanks], measured: ResampleRanks,
                       counts: np.ndarray) -> dict[str, np.ndarray]:
    """Spearman's rho of each predictor against ``measured`` (the same pairs, in the same order) in the
    resamples ``counts`` (B, clusters): the weighted Pearson r of the resample's mid-ranks, equal to
    :func:`spearman` of the resample written out. A resample whose prediction is constant scores 0;
    one whose measured side is constant (and the prediction not), NaN."""
    counts = np.asarray(counts, dtype=float)
    rm, spread_m = measured.centered(counts)
    rm *= np.take(counts, measured.owner, axis=1)
    out = {}
    for name, side in predicted.items():
        rp, spread_p = side.centered(counts)
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.einsum("bi,bi->b", rp, rm) / np.sqrt(spread_p * spread_m)
        out[name] = np.where(spread_p > 0, np.where(spread_m > 0, rho, np.nan), 0.0)
    return out


def cluster_bootstrap_spearman(predicted: dict[str, np.ndarray], measured: np.ndarray, owner: np.ndarray,
                               n_boot: int = 1000, seed: int = 0,
                               block_elements: int = 1 << 17) -> dict[str, np.ndarray]:
    """Spearman's rho of each predictor against ``measured`` in ``n_boot`` resamples of the clusters
    (``owner[i]`` is the cluster of pair ``i``, 0..C-1; a cluster's pairs are drawn together), the same
    resamples for every predictor. Resamples are scored in blocks of about ``block_elements`` pairs,
    which bounds the memory."""
    order = np.argsort(np.asarray(measured, dtype=float), kind="stable")     # pairs in measured order
    owner = np.asarray(owner)[order]
    clusters = int(owner.max()) + 1 if owner.size else 0
    truth = ResampleRanks(np.asarray(measured, dtype=float)[order], owner)
    sides = {name: ResampleRanks(np.asarray(p, dtype=float)[order], owner) for name, p in predicted.items()}
    rng = np.random.default_rng(seed)
    rows = max(1, block_elements // max(owner.size, 1))
    out = {name: [np.zeros(0)] for name in predicted}
    for start in range(0, n_boot if clusters else 0, rows):
        counts = resample_counts(rng, clusters, min(rows, n_boot - start))
        for name, rho in resampled_spearman(sides, truth, counts).items():
            out[name].append(rho)
    return {name: np.concatenate(parts) for name, parts in out.items()}


def resample_counts(rng: np.random.Generator, n: int, rows: int) -> np.ndarray:
    """``rows`` bootstrap resamples of ``n`` items as counts, (rows, n): how many times each item was
    drawn in ``n`` draws with replacement (a multinomial with equal probabilities)."""
    picks = rng.integers(0, n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
    return np.bincount(picks.ravel(), minlength=rows * n).reshape(rows, n)


# two-sided 97.5% quantiles of Student's t by degrees of freedom (beyond the table: the normal's)
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t_quantile(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (df from the table at or below)."""
    known = [d for d in _T975 if d <= df]
    return _T975[max(known)] if known and df <= 120 else 1.96


def seed_interval(values, bounds: tuple[float, float] | None = None) -> dict:
    """Mean over training seeds with a 95% Student-t interval: {"mean", "ci_low", "ci_high", "values", "n"}.

    Values that are None or not finite (a metric a network does not have) are left out; with one
    value the interval is that value's point, with none everything is None. ``bounds`` (low, high):
    the range the metric lies in (a share: 0, 1), to which the interval is clipped: over 3 seeds a
    share near 1 would otherwise get an interval reaching past it.
    """
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not kept:
        return {"mean": None, "ci_low": None, "ci_high": None, "values": list(values), "n": 0}
    mean = float(np.mean(kept))
    half = t_quantile(len(kept) - 1) * float(np.std(kept, ddof=1)) / math.sqrt(len(kept)) if len(kept) > 1 else 0.0
    low, high = bounds or (-math.inf, math.inf)
    return {"mean": mean, "ci_low": max(mean - half, low), "ci_high": min(mean + half, high), "values": list(values),
            "n": len(kept)}
