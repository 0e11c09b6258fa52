"""``hpnet dissect``: the face part where each feature channel fires, as dissect.json and a figure."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..analysis.dissect import DissectSettings, dissect
from ..data import DataSpec, default_eval_split, load_split
from ..report.dissect import write_dissect_figures
from ..results import DissectResult
from ..run import Run
from .analyse import name_analysis_channels


def dissect_run(run: str | Path | Run, settings: DissectSettings | None = None, data: DataSpec | None = None,
                device: str = "auto", progress: bool = True) -> DissectResult:
    """Dissect the run's channels on the images its operations' view is read from (the first
    ``max_images`` of "valid", or of "train" when valid is the evaluation split or empty), so that
    the roles are those the role operation uses; ``data``: other images (e.g. CelebA from another
    folder; attributes default to the model's). Writes RUN/dissect.json and RUN/figures/dissect_roles.png,
    and redraws the Fig. 4-6 of an earlier ``hpnet analyse`` with the channels named by their parts."""
    run = Run.of(run)
    model = run.model(device)
    if data is None:
        spec = run.data_spec
        split, images = run.view_data(run.eval_split(), progress)
    else:
        spec = dataclasses.replace(data, attributes=data.attributes or model.attribute_names)
        split = "valid" if default_eval_split(spec) == "test" else "train"
        if split == "valid" and len(load_split(spec, "valid", progress)) == 0:
            split = "train"
        images = run.split(split, progress, spec=spec)
    result = dissect(model, images, settings, progress)
    result.run, result.split, result.dataset = str(run.path), split, spec.dataset
    result.figures = write_dissect_figures(run.path, result)
    run.write(result)
    if model.has_masks:
        name_analysis_channels(run, model, progress)      # Fig. 4-6 of an earlier hpnet analyse, named
    return result
