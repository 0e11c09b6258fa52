"""Pruning curves (paper Fig. 7): mean accuracy after pruning the first P channels of each order.

The extractor runs once per batch; every distinct pruned set then runs only the heads. Each pruned
model is evaluated as it is (heads unchanged) and, with a fit set, with its classifiers
reconstructed (:mod:`.refit`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ... import checks
from ...core.stream import image_count, inference, model_device, stream
from ...data import parse_splits
from ...data.base import MultiLabelDataset
from ...errors import HPNetError
from ...model import HPNet
from .apply import prunable
from .refit import PrunedHeads, reconstruct_all
from .scorers import Order


@dataclass
class CurveSettings:
    """How the curves are measured (a part of :class:`~hpnet.ops.pruning.prune.PruneSettings`): accuracy
    at each number of pruned channels in ``grid`` (default about 17 points from 0 to C) on the first
    ``max_images`` images of ``split`` (default: the run's evaluation split), in batches of
    ``batch_size``; ``reconstruct``: each pruned model also with its classifiers refitted on the first
    ``fit_images`` training images."""

    grid: Sequence[int] | None = field(default=None, metadata={
        "flag": "--grid", "help": "numbers of pruned channels to evaluate (default about 17 points from 0 to C)"})
    reconstruct: bool = field(default=True, metadata={
        "flag": "--no-reconstruct", "help": "evaluate pruned models with their classifiers unchanged only (default: "
                                            "also refit w_k, b_k by least squares to the original logits, and "
                                            "report those)"})
    fit_images: int | None = field(default=1000, metadata={
        "flag": "--fit-images", "help": "training images the reconstruction is fitted on (default {default})"})
    split: str | None = field(default=None, metadata={
        "flag": "--split", "help": "evaluation split (default test, or valid when empty)"})
    max_images: int | None = field(default=None, metadata={
        "flag": "--max-images", "help": "evaluate on at most N images"})
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.grid is not None:
            self.grid = checks.counts(self.grid, "--grid", smallest=0)
        checks.flag(self.reconstruct, "reconstruct")
        checks.count(self.fit_images, "--fit-images", optional=True)
        if self.split is not None:
            parse_splits(self.split)
        checks.count(self.max_images, "--max-images", optional=True)
        checks.count(self.batch_size, "batch_size")


def default_grid(channels: int, points: int = 17) -> list[int]:
    """About ``points`` pruned-channel counts evenly from 0 to C, always with 0, C // 2 and C."""
    steps = np.linspace(0, channels, points).round().astype(int).tolist()
    return sorted(set(steps) | {0, channels // 2, channels})


def pruning_curves(model: HPNet, data: MultiLabelDataset, orders: dict[str, Order | list[Order]],
                   grid: Sequence[int], batch_size: int = 64, max_images: int | None = None,
                   physical: bool = True, progress: bool = False, fit: MultiLabelDataset | None = None,
                   fit_images: int | None = 1000) -> dict:
    """Accuracy after pruning the first P channels of each order, for every P in ``grid``.

    ``orders`` maps a method name to one order (a permutation of the C channel ids) or to a list of
    orders (e.g. random seeds: reported as mean and standard deviation over them, ddof = 1).
    The extractor runs once per batch; every distinct pruned set then runs only the heads, on z
    with the pruned channels removed (``physical=True``, cheaper: the heads cost grows with C^2)
    or zeroed (``physical=False``, the masked model itself). Both give the same logits.

    With ``fit`` (a data set, e.g. the training split), every pruned model is also evaluated with
    its classifiers reconstructed on the first ``fit_images`` images of it (:class:`HeadFit`):
    then ``"methods"`` holds the reconstructed curves and ``"methods_heads_unchanged"`` the plain
    ones; without ``fit``, ``"methods"`` holds the plain ones.

    Returns ``{"methods": {name: [[P, accuracy], ...] or [[P, mean, std], ...]},
    "per_attribute": {name: [[K accuracies] per P]}, "grid", "channels", "images", "attributes",
    "orders", "configurations", "reconstructed"}``; accuracies are means over attributes.
    """
    C = model.config.channels
    grid = check_grid(grid, C)
    plans, pruned_sets = _plan(orders, grid, C)
    physical = physical and prunable(model)     # a module backbone without last_conv: masked
    heads = [PrunedHeads(model, s, physical) for s in pruned_sets]
    if fit is not None:
        reconstruct_all(model, heads, fit, batch_size, fit_images, progress)
    counts, n = _count_correct(model, data, heads, batch_size, max_images, progress)
    acc = counts / max(n, 1)                                              # (V, S, K)
    result = {"methods": {}, "per_attribute": {}, "grid": grid, "channels": C, "images": n,
              "attributes": list(model.attribute_names), "configurations": len(pruned_sets),
              "reconstructed": fit is not None,
              "orders": {name: _order_field(value) for name, value in orders.items()}}
    if fit is not None:
        result["fit_images"] = image_count(fit, fit_images)
        result["methods_heads_unchanged"] = {}
    for name, (multi, plan) in plans.items():
        rows, per_attribute = _summarise(acc[-1][torch.tensor(plan)], grid, multi)  # (R, G, K)
        result["methods"][name] = rows
        result["per_attribute"][name] = per_attribute
        if fit is not None:
            result["methods_heads_unchanged"][name] = _summarise(acc[0][torch.tensor(plan)], grid, multi)[0]
    return result


def check_grid(grid: Sequence[int], channels: int) -> list[int]:
    """The pruned-channel counts, sorted and distinct; each must be in 0..C."""
    values = sorted({int(p) for p in grid})
    if not values or values[0] < 0 or values[-1] > channels:
        raise HPNetError(f"--grid: pruning grid must hold channel counts in 0..{channels}, got {list(grid)}")
    return values


def _as_orders(value) -> tuple[bool, list[list[int]]]:
    """(several orders?, the orders as lists of ints)."""
    value = value.tolist() if isinstance(value, (torch.Tensor, np.ndarray)) else value
    multi = len(value) > 0 and not np.isscalar(value[0])
    seq = value if multi else [value]
    return multi, [[int(c) for c in (o.tolist() if hasattr(o, "tolist") else o)] for o in seq]


def _order_field(value) -> list:
    multi, seq = _as_orders(value)
    return seq if multi else seq[0]


def _plan(orders: dict, grid: list[int], channels: int) -> tuple[dict, list[tuple[int, ...]]]:
    """Per method, the index of the pruned set at each (order, P); pruned sets deduplicated."""
    index: dict[tuple[int, ...], int] = {}
    plans = {}
    for name, value in orders.items():
        multi, seq = _as_orders(value)
        for order in seq:
            if sorted(order) != list(range(channels)):
                raise HPNetError(f"pruning order {name!r} must list each of the {channels} channels once")
        plans[name] = (multi, [[index.setdefault(tuple(sorted(o[:p])), len(index)) for p in grid]
                               for o in seq])
    return plans, list(index)


def _summarise(acc: torch.Tensor, grid: list[int], multi: bool) -> tuple[list[list], list[list[float]]]:
    """acc (R, G, K) -> rows [[P, mean]] or [[P, mean, std]] and per-attribute means (G, K)."""
    means = acc.mean(-1)                                                  # (R, G)
    per_attribute = acc.mean(0).tolist()
    if not multi:
        return [[p, float(m)] for p, m in zip(grid, means[0])], per_attribute
    std = means.std(0) if means.shape[0] > 1 else torch.zeros(len(grid), dtype=means.dtype)
    return [[p, float(m), float(s)] for p, m, s in zip(grid, means.mean(0), std)], per_attribute


def _count_correct(model: HPNet, data: MultiLabelDataset, heads: list[PrunedHeads], batch_size: int,
                   max_images: int | None, progress: bool) -> tuple[torch.Tensor, int]:
    """Correct decisions (V, S, K) of every pruned set under each of its V classifier pairs."""
    device = model_device(model)
    V = len(heads[0].classifiers) if heads else 1
    counts = torch.zeros(V, len(heads), model.config.num_attributes, dtype=torch.float64, device=device)
    with inference(model):
        for x, y in stream(data, batch_size, device, max_images, progress, "pruning curves"):
            z, context = model.encode(x)
            for s, h in enumerate(heads):
                for v, logits in enumerate(h.logits(z, context)):
                    counts[v, s] += ((logits > 0).float() == y).sum(0).double()
    return counts.cpu(), image_count(data, max_images)
