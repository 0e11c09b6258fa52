"""Pruning orders: which channel each method prunes first. One registry entry per method.

A scorer reads what it needs of the trained model from :class:`ScanInputs` (each input computed
once, on first use) and returns named orders: a permutation of the C channel ids, first entry
pruned first, or a list of them (random seeds). ``hpnet prune --method`` lists :data:`SCORERS`.

- ``semantic`` (paper Fig. 3): scan channel pairs by correlation, highest first; of a pair whose two
  channels are both still kept, prune the one with the lower L1 norm of the filter producing it
  (``rule="higher"``: the higher). Also reported: the other rule and the scan of every other
  correlation kind, as ``semantic_<rule>`` and ``semantic_<kind>``.
- ``random``: uniformly random orders, one per seed.
- ``l1``: smallest filter L1 norm first (Li et al. 2017).
- ``attention``: least attended first, by the mean over attributes of the Fig. 5 grid.

To add a scorer: one function here, decorated with ``@scorer("name")``, plus its test.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ... import checks
from ...analysis.correlation import CORRELATIONS
from ...analysis.masks import mean_mask_grid
from ...data.base import MultiLabelDataset
from ...errors import HPNetError
from ...model import HPNet
from ...registry import Registry

RULES = ("lower", "higher")

Order = Sequence[int]
Orders = dict[str, "Order | list[Order]"]


@dataclass
class ScanSettings:
    """How the scorers scan (a part of :class:`~hpnet.ops.pruning.prune.PruneSettings`): ``rule`` and
    ``correlation`` kind of the semantic scan (``both_rules``: the other rule too; ``use_abs``: rank by
    |R|), ``seeds`` random orders from ``seed``, correlations and mean masks from the first
    ``corr_images`` training images in batches of ``batch_size``."""

    rule: str = field(default="lower", metadata={
        "flag": "--rule", "choices": RULES,
        "help": "of a correlated pair, prune the channel with the lower (default) or higher filter L1"})
    correlation: str = field(default="contributions", metadata={
        "flag": "--correlation", "choices": CORRELATIONS,
        "help": "what the semantic scan correlates: the channels' contributions to the logits (default) or the "
                "features over every position (the paper's Fig. 6); the other is reported as semantic_<kind>"})
    both_rules: bool = True
    use_abs: bool = False
    seeds: int = field(default=5, metadata={"flag": "--seeds", "help": "random orders averaged"})
    seed: int = 0
    corr_images: int | None = 2000
    batch_size: int = 64

    def __post_init__(self) -> None:
        checks.choice(self.rule, "--rule", RULES)
        CORRELATIONS.get(self.correlation)
        checks.flag(self.both_rules, "both_rules")
        checks.flag(self.use_abs, "use_abs")
        checks.count(self.seeds, "--seeds")
        checks.seed(self.seed, "seed")
        checks.count(self.corr_images, "corr_images", optional=True)
        checks.count(self.batch_size, "batch_size")


class ScorerSkipped(Exception):
    """Raised by a scorer that does not apply to the model; the message says why."""


class ScanInputs:
    """What the scorers may read: the model, the settings, and, computed once on first use from
    the first ``settings.corr_images`` training images, the channel correlations and the mean masks.
    ``correlations`` and ``mean_masks`` may be given instead (then ``train`` is not needed)."""

    def __init__(self, model: HPNet, settings: ScanSettings, train: MultiLabelDataset | None = None,
                 correlations: dict[str, torch.Tensor] | None = None, mean_masks: torch.Tensor | None = None,
                 progress: bool = False):
        self.model, self.settings, self.train, self.progress = model, settings, train, progress
        self._given = correlations is not None
        self._correlations = dict(correlations or {})
        self._mean_masks = mean_masks
        self._filter_l1: torch.Tensor | None = None

    @property
    def correlation_kinds(self) -> list[str]:
        return list(self._correlations) if self._given else CORRELATIONS.names()

    def correlation(self, kind: str) -> torch.Tensor:
        """The C x C correlation of ``kind`` (a name of CORRELATIONS)."""
        if kind not in self._correlations:
            if self._given or self.train is None:
                raise HPNetError(f"--correlation must be among {', '.join(self.correlation_kinds)}, got {kind!r}")
            s = self.settings
            self._correlations[kind] = CORRELATIONS.get(kind)(self.model, self.train, s.batch_size,
                                                              s.corr_images, self.progress)
        return self._correlations[kind]

    @property
    def mean_masks(self) -> torch.Tensor:
        if self._mean_masks is None:
            if self.train is None:
                raise HPNetError("the least-attended order needs training images for the mean masks")
            s = self.settings
            self._mean_masks = mean_mask_grid(self.model, self.train, s.batch_size, s.corr_images, self.progress)
        return self._mean_masks

    @property
    def filter_l1(self) -> torch.Tensor:
        """The norms the semantic scan compares: each last-conv filter's L1 norm, or, for a module
        backbone that declares no last conv, the L1 norm of each channel's classifier weights."""
        if self._filter_l1 is None:
            model = self.model
            self._filter_l1 = filter_l1(model) if model.extractor.last_conv is not None \
                else model.heads.weight.detach().abs().sum(0).float().cpu()
        return self._filter_l1


Scorer = Callable[[ScanInputs], Orders]
SCORERS: Registry[Scorer] = Registry("--method")


def scorer(name: str) -> Callable[[Scorer], Scorer]:
    return SCORERS.register(name)


def method_orders(inputs: ScanInputs, methods: Sequence[str]) -> tuple[Orders, dict[str, str]]:
    """The orders of every method in ``methods`` (names of SCORERS), and the methods skipped, with why."""
    scorers = [SCORERS.get(m) for m in methods]
    orders: Orders = {}
    skipped: dict[str, str] = {}
    for name, score in zip(methods, scorers):
        try:
            orders.update(score(inputs))
        except ScorerSkipped as why:
            skipped[name] = str(why)
    return orders, skipped


# ----------------------------------------------------------------------------------------------
# the scorers


@scorer("semantic")
def semantic(inputs: ScanInputs) -> Orders:
    s, l1 = inputs.settings, inputs.filter_l1
    orders: Orders = {"semantic": semantic_order(inputs.correlation(s.correlation), l1, s.rule, s.use_abs)}
    if s.both_rules:
        other = RULES[1 - RULES.index(s.rule)]
        orders[f"semantic_{other}"] = semantic_order(inputs.correlation(s.correlation), l1, other, s.use_abs)
    for kind in inputs.correlation_kinds:
        if kind != s.correlation:
            orders[f"semantic_{kind}"] = semantic_order(inputs.correlation(kind), l1, s.rule, s.use_abs)
    return orders


@scorer("random")
def random(inputs: ScanInputs) -> Orders:
    s, C = inputs.settings, inputs.model.config.channels
    return {"random": [random_order(C, s.seed + i) for i in range(max(1, s.seeds))]}


@scorer("l1")
def l1(inputs: ScanInputs) -> Orders:
    if inputs.model.extractor.last_conv is None:
        raise ScorerSkipped("the backbone module declares no last_conv, whose filters this order measures")
    return {"l1": l1_order(inputs.model)}


@scorer("attention")
def attention(inputs: ScanInputs) -> Orders:
    if not inputs.model.has_masks:
        raise ScorerSkipped("the model has linear heads (no attention masks)")
    return {"attention": attention_order(inputs.mean_masks)}


# ----------------------------------------------------------------------------------------------
# channel scores and orders (first entry = first channel pruned)


def filter_l1(model: HPNet) -> torch.Tensor:
    """L1 norm of each output filter of the last conv, the one producing channel c of z: (C,)."""
    return model.extractor.last_conv.weight.detach().abs().sum(dim=(1, 2, 3)).float().cpu()


def semantic_order(corr: torch.Tensor | np.ndarray, l1: torch.Tensor | np.ndarray,
                   rule: str = "lower", use_abs: bool = False) -> list[int]:
    """Pruning order of the semantic scan (paper Fig. 3); every channel exactly once.

    Pairs (i < j) are scanned by correlation, highest first, ties in (i, j) order; signed
    correlation by default (two channels that move in opposite directions do not play the same
    role), ``use_abs=True`` ranks by |R|. NaN correlations are scanned last. For a pair whose two
    channels are both still kept, the one with the lower L1 norm is pruned (``rule="higher"``: the
    higher); on equal norms the later channel j. The scan stops once C - 1 channels are pruned; the
    one channel left (there is exactly one: any two kept channels would form a pair the scan saw
    with both kept) comes last.
    """
    r, norms = _check_scan_inputs(corr, l1, rule)
    C = r.shape[0]
    i, j = np.triu_indices(C, k=1)
    score = np.abs(r[i, j]) if use_abs else r[i, j]
    score = np.where(np.isnan(score), -np.inf, score)
    ranked = np.lexsort((j, i, -score))  # last key is primary: highest correlation first
    kept = np.ones(C, dtype=bool)
    pruned: list[int] = []
    for a, b in zip(i[ranked], j[ranked]):
        if len(pruned) == C - 1:
            break
        if kept[a] and kept[b]:
            victim = _victim(int(a), int(b), norms, rule)
            kept[victim] = False
            pruned.append(victim)
    return pruned + _remaining(kept, norms, rule)


def _check_scan_inputs(corr, l1, rule: str) -> tuple[np.ndarray, np.ndarray]:
    if rule not in RULES:
        raise HPNetError(f"--rule must be one of {', '.join(RULES)}, got {rule!r}")
    r = torch.as_tensor(corr).detach().cpu().double().numpy()
    norms = torch.as_tensor(l1).detach().cpu().double().numpy()
    if r.ndim != 2 or r.shape[0] != r.shape[1] or norms.shape != (r.shape[0],):
        raise HPNetError(f"correlation must be (C, C) and L1 norms (C,), got {r.shape} and {norms.shape}")
    return r, norms


def _victim(a: int, b: int, norms: np.ndarray, rule: str) -> int:
    if rule == "lower":
        return a if norms[a] < norms[b] else b
    return a if norms[a] > norms[b] else b


def _remaining(kept: np.ndarray, norms: np.ndarray, rule: str) -> list[int]:
    rest = np.flatnonzero(kept)
    key = norms[rest] if rule == "lower" else -norms[rest]
    return [int(c) for c in rest[np.argsort(key, kind="stable")]]


def random_order(channels: int, seed: int) -> list[int]:
    """A uniformly random order, reproducible from ``seed``."""
    return torch.randperm(channels, generator=torch.Generator().manual_seed(int(seed))).tolist()


def l1_order(model: HPNet) -> list[int]:
    """Smallest filter L1 norm first (Li et al. 2017); ties by channel id."""
    return torch.argsort(filter_l1(model), stable=True).tolist()


def attention_order(mean_masks: torch.Tensor) -> list[int]:
    """Least attended first: mean over attributes of the (K, C) mean-mask grid (Fig. 5); ties by id."""
    return torch.argsort(torch.as_tensor(mean_masks).double().mean(0), stable=True).tolist()
