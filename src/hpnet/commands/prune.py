"""``hpnet prune``: Fig. 7 for a run, and optionally a physically smaller copy of it."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..checkpoint import CHECKPOINT
from ..errors import HPNetError
from ..folders import FolderTaken, clear, is_empty, staged
from ..io import check_output
from ..model import HPNet
from ..ops.pruning import PruneSettings, prune_model
from ..results import PruningResult
from ..run import Run


def prune_run(run: str | Path | Run, settings: PruneSettings | None = None, device: str = "auto",
              progress: bool = True) -> PruningResult:
    """Pruning curves of every method (orders and reconstruction from the training split, curves on
    the evaluation split), written to RUN/pruning.json; with ``keep`` and ``save`` the smaller model
    is written to ``save`` as a run folder that every command accepts."""
    run, s = Run.of(run), settings or PruneSettings()
    _check_save(s, run)
    model = run.model(device)
    train = run.split("train", progress)
    split, data = run.eval_data(s.curves.split, progress)
    result, small = prune_model(model, train, data, s, progress)
    result.split, result.run = split, str(run.path)
    result.majority_baseline = run.majority_baseline(data, s.curves.max_images)
    if small is not None and s.save is not None:
        how = {"method": "semantic", "rule": s.scan.rule, "correlation": s.scan.correlation,
               "reconstructed": s.curves.reconstruct}
        save_pruned(small, result.physical["kept_channels"], run, s.save, how, s.overwrite)
        result.physical["saved_to"] = str(s.save)
    run.write(result)
    return result


def _check_save(settings: PruneSettings, run: Run) -> None:
    """Fail before the long passes when the model cannot be saved where asked."""
    if settings.save is None:
        return
    save = check_output(settings.save, "--save", folder=True)
    if (save / CHECKPOINT).exists() or save.resolve() == run.path.resolve():
        raise HPNetError(f"{save}: holds a trained run; save the pruned model to another folder")
    if not settings.overwrite and not is_empty(save):
        raise HPNetError(f"--save {save}: holds files already; choose another --save, or --overwrite to replace "
                         f"what hpnet wrote there")


def save_pruned(small: HPNet, kept: Sequence[int], run: Run, out: str | Path, how: dict | None = None,
                overwrite: bool = False) -> HPNet:
    """Write the physically pruned model ``small`` (channels ``kept`` of the run's model) to ``out``
    as a run folder (model files + run.json), whole: it is written beside ``out`` and renamed there,
    so a reader never sees half of it and of two saves racing for ``out`` one lands (the other is
    refused). A folder already holding files is refused, or with ``overwrite`` replaced.

    The run record is the original one (data spec, training settings, training positive rates)
    with the new model config, ``pruned_from``, ``kept_channels`` and ``pruning`` (``how``).
    """
    out = Path(out)
    if overwrite:
        clear(out, "--save")
        if out.is_dir() and is_empty(out):
            out.rmdir()
    with staged(out, _taken) as staging:
        run.derive(small, staging, pruned_from=str(run.path.resolve()), kept_channels=sorted(int(c) for c in kept),
                   pruning=how or {})
    return small.cpu()


def _taken(out: Path) -> FolderTaken:
    return FolderTaken(f"--save {out}: another command wrote a model there meanwhile; choose another --save")
