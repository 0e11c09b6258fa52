"""Semantic channel pruning of a trained model, start to finish: orders, curves, a smaller model."""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ... import checks
from ...core.stream import image_count
from ...data import parse_splits
from ...data.base import MultiLabelDataset
from ...errors import HPNetError
from ...model import HPNet
from ...results import PruningResult
from .apply import physical_report, prune_physical
from .curves import check_grid, default_grid, pruning_curves
from .refit import reconstruct_heads
from .scorers import SCORERS, ScanInputs, ScanSettings, method_orders


@dataclass
class PruneSettings(ScanSettings):
    """What ``hpnet prune`` does (defaults are the command line's).

    ``methods``: names of :data:`~hpnet.ops.pruning.scorers.SCORERS`, scanning as the
    :class:`~hpnet.ops.pruning.scorers.ScanSettings` fields say ("semantic" scans the
    ``correlation`` kind with ``rule``; the other kinds are reported as ``semantic_<kind>``). ``grid``:
    the numbers of pruned channels (default about 17 points from 0 to C). Curves on the first
    ``max_images`` images of ``split`` (default: the run's evaluation split). ``reconstruct``: also
    refit every pruned model's classifiers on the first ``fit_images`` training images. ``keep``: also
    prune physically to the last ``keep`` channels of the semantic order, and with ``save`` write that
    model as a run folder.
    """

    methods: Sequence[str] = field(default_factory=SCORERS.names)
    grid: Sequence[int] | None = None
    split: str | None = None
    max_images: int | None = None
    reconstruct: bool = True
    fit_images: int | None = 1000
    keep: int | None = None
    save: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.methods:
            raise HPNetError(f"--method: give at least one of {', '.join(SCORERS)}")
        self.methods = checks.names(self.methods, "--method")
        for m in self.methods:
            SCORERS.get(m)
        if self.grid is not None:
            self.grid = checks.counts(self.grid, "--grid", smallest=0)
        if self.split is not None:
            parse_splits(self.split)
        checks.count(self.max_images, "--max-images", optional=True)
        checks.flag(self.reconstruct, "reconstruct")
        checks.count(self.fit_images, "--fit-images", optional=True)
        checks.count(self.keep, "--keep", optional=True)
        self.save = checks.path(self.save, "--save", optional=True)
        if self.save is not None and self.keep is None:
            raise HPNetError("--save needs --keep N (how many channels the saved model keeps)")


class Pruned(NamedTuple):
    result: PruningResult
    model: HPNet | None          # the physically pruned model, when ``keep`` was given


def prune_model(model: HPNet, train: MultiLabelDataset, data: MultiLabelDataset,
                settings: PruneSettings | None = None, progress: bool = False) -> Pruned:
    """Fig. 7 for ``model``: the curves of every method on ``data`` (orders and reconstruction from
    ``train``), and with ``settings.keep`` the physically pruned model and its report.

    ``run``, ``split`` and ``majority_baseline`` of the result are the caller's to fill."""
    s = settings or PruneSettings()
    C = model.config.channels
    if s.keep is not None and not 1 <= int(s.keep) <= C:
        raise HPNetError(f"--keep must be in 1..{C}, got {s.keep}")
    grid = check_grid(s.grid, C) if s.grid is not None else default_grid(C)
    fit = train if s.reconstruct else None
    start = time.perf_counter()
    inputs = ScanInputs(model, s, train, progress=progress)
    orders, skipped = method_orders(inputs, s.methods)
    scan_s = time.perf_counter() - start
    curves = pruning_curves(model, data, orders, grid, s.batch_size, s.max_images,
                            progress=progress, fit=fit, fit_images=s.fit_images)
    result = PruningResult(
        **curves, rule=s.rule, use_abs=s.use_abs, correlation=s.correlation, backbone=model.config.backbone,
        correlation_split="train", correlation_images=image_count(train, s.corr_images),
        random_seeds=max(1, s.seeds), filter_l1=inputs.filter_l1.tolist(),
        seconds={"correlation_and_orders": scan_s, "curves": time.perf_counter() - start - scan_s},
        skipped=skipped or None)
    small = None
    if s.keep is not None:
        order = orders.get("semantic") or SCORERS.get("semantic")(inputs)["semantic"]
        kept = order[-int(s.keep):]
        small = prune_physical(model, kept)
        if fit is not None:
            reconstruct_heads(small, model, kept, fit, s.batch_size, s.fit_images)
        result.physical = physical_report(model, kept, data, s.batch_size, s.max_images, small=small)
        result.physical["reconstructed"] = fit is not None
    return Pruned(result, small)
