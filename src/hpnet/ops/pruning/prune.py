"""Semantic channel pruning of a trained model, start to finish: orders, curves, a smaller model."""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ... import checks
from ...core.stream import image_count
from ...data.base import MultiLabelDataset
from ...errors import HPNetError
from ...model import HPNet
from ...results import PruningResult
from .apply import physical_report, prune_physical
from .curves import CurveSettings, check_grid, default_grid, pruning_curves
from .refit import reconstruct_heads
from .scorers import SCORERS, ScanInputs, ScanSettings, method_orders


@dataclass
class PruneSettings:
    """What ``hpnet prune`` does (defaults are the command line's), in parts.

    ``methods``: names of :data:`~hpnet.ops.pruning.scorers.SCORERS`, their orders found as ``scan``
    says (:class:`~hpnet.ops.pruning.scorers.ScanSettings`: the semantic scan's rule and correlation
    kind, the random orders, the training images read) and their curves measured as ``curves`` says
    (:class:`~hpnet.ops.pruning.curves.CurveSettings`: grid, evaluation images, reconstruction).
    ``keep``: also prune physically to the last ``keep`` channels of the semantic order, and with
    ``save`` write that model as a run folder (a folder holding files is refused, unless
    ``overwrite``: then one hpnet wrote is replaced).
    """

    methods: Sequence[str] = field(default_factory=SCORERS.names, metadata={
        "flag": "--method", "choices": SCORERS, "help": "methods, comma separated (default all: {default})"})
    scan: ScanSettings = field(default_factory=ScanSettings, metadata={"part": True})
    curves: CurveSettings = field(default_factory=CurveSettings, metadata={"part": True})
    keep: int | None = field(default=None, metadata={"flag": "--keep", "help": "also prune physically to N channels"})
    save: str | None = field(default=None, metadata={
        "flag": "--save", "help": "with --keep: write the smaller model as a run folder"})
    overwrite: bool = field(default=False, metadata={
        "flag": "--overwrite", "help": "with --save: replace what the folder holds (only a folder hpnet wrote)"})

    def __post_init__(self) -> None:
        if not self.methods:
            raise HPNetError(f"--method: give at least one of {', '.join(SCORERS)}")
        self.methods = checks.names(self.methods, "--method")
        for m in self.methods:
            SCORERS.get(m)
        if not isinstance(self.scan, ScanSettings):
            raise HPNetError(f"scan must be a ScanSettings, got {self.scan!r}")
        if not isinstance(self.curves, CurveSettings):
            raise HPNetError(f"curves must be a CurveSettings, got {self.curves!r}")
        checks.count(self.keep, "--keep", optional=True)
        self.save = checks.path(self.save, "--save", optional=True)
        if self.save is not None and self.keep is None:
            raise HPNetError("--save needs --keep N (how many channels the saved model keeps)")
        if self.overwrite and self.save is None:
            raise HPNetError("--overwrite replaces the --save folder: give --save too")


class Pruned(NamedTuple):
    result: PruningResult
    model: HPNet | None          # the physically pruned model, when ``keep`` was given


def prune_model(model: HPNet, train: MultiLabelDataset, data: MultiLabelDataset,
                settings: PruneSettings | None = None, progress: bool = False) -> Pruned:
    """Fig. 7 for ``model``: the curves of every method on ``data`` (orders and reconstruction from
    ``train``), and with ``settings.keep`` the physically pruned model and its report.

    ``run``, ``split`` and ``majority_baseline`` of the result are the caller's to fill."""
    s = settings or PruneSettings()
    scan, measure = s.scan, s.curves
    C = model.config.channels
    if s.keep is not None and not 1 <= int(s.keep) <= C:
        raise HPNetError(f"--keep must be in 1..{C}, got {s.keep}")
    grid = check_grid(measure.grid, C) if measure.grid is not None else default_grid(C)
    fit = train if measure.reconstruct else None
    start = time.perf_counter()
    inputs = ScanInputs(model, scan, train, progress=progress)
    orders, skipped = method_orders(inputs, s.methods)
    scan_s = time.perf_counter() - start
    curves = pruning_curves(model, data, orders, grid, measure.batch_size, measure.max_images,
                            progress=progress, fit=fit, fit_images=measure.fit_images)
    result = PruningResult(
        **curves, rule=scan.rule, use_abs=scan.use_abs, correlation=scan.correlation, backbone=model.config.backbone,
        correlation_split="train", correlation_images=image_count(train, scan.corr_images),
        random_seeds=max(1, scan.seeds), filter_l1=inputs.filter_l1.tolist(),
        seconds={"correlation_and_orders": scan_s, "curves": time.perf_counter() - start - scan_s},
        skipped=skipped or None)
    small = None
    if s.keep is not None:
        order = orders.get("semantic") or SCORERS.get("semantic")(inputs)["semantic"]
        kept = order[-int(s.keep):]
        small = prune_physical(model, kept)
        if fit is not None:
            reconstruct_heads(small, model, kept, fit, measure.batch_size, measure.fit_images)
        result.physical = physical_report(model, kept, data, measure.batch_size, measure.max_images, small=small)
        result.physical["reconstructed"] = fit is not None
    return Pruned(result, small)
