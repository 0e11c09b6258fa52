"""``hpnet robust``: Fig. 8 for a run, and the per-attribute choice of (n, beta)."""
from __future__ import annotations

from pathlib import Path

from ..data import load_split
from ..ops.robust import RobustSettings, robustness
from ..results import RobustnessResult
from ..run import Run


def robust_run(run: str | Path | Run, settings: RobustSettings | None = None, device: str = "auto",
               progress: bool = True) -> RobustnessResult:
    """The noise sweep on the evaluation split, written to RUN/robustness.json. With ``select`` the
    (n, beta) per attribute is chosen on the "valid" split (the evaluation data itself when there is
    no other); the run's saved model is not changed."""
    run, s = Run.of(run), settings or RobustSettings()
    model = run.model(device)
    split, data = run.eval_data(s.split, progress)
    valid, valid_split = None, split
    if s.select and split != "valid":
        held_out = load_split(run.data_spec, "valid", progress)
        if len(held_out):
            valid, valid_split = held_out, "valid"
    result = robustness(model, data, s, valid, progress)
    result.split, result.run = split, str(run.path)
    result.majority_baseline = run.majority_baseline(data, s.max_images)
    if result.selection is not None:
        result.selection.update(selection_split=valid_split, test_split=split)
    run.write(result)
    return result
