"""``hpnet analyse``: Fig. 4, 5, 6 and Table 4 of a run, as analysis.json and figures."""
from __future__ import annotations

from pathlib import Path

import torch

from ..analysis.attention import AnalysisSettings, analyse, mask_maps
from ..model import HPNet
from ..report.figures import write_analysis_figures
from ..report.roles import run_roles
from ..results import AnalysisResult
from ..run import Run


def analyse_run(run: str | Path | Run, settings: AnalysisSettings | None = None, device: str = "auto",
                progress: bool = True) -> AnalysisResult:
    """The mean-mask grid and Fig. 4 from the evaluation split ("test", or "valid" when test is
    empty), the channel correlation from the training split; writes RUN/analysis.json and
    RUN/figures/ (Fig. 4-6 as PNG, Table 4 as Markdown). Fig. 4 and 6 name each channel by the
    face part where it fires when RUN/dissect.json holds the roles (``hpnet dissect``)."""
    run = Run.of(run)
    model = run.model(device, needs_masks=True)
    split, data = run.eval_data(progress=progress)
    train = run.split("train", progress)
    result, fig4 = analyse(model, data, train, settings, progress)
    result.run = str(run.path)
    result.images.update(mean_mask_split=split, channel_correlation_split="train", fig4_split=split)
    result.figures = write_analysis_figures(run.path, result, fig4.images, fig4.maps,
                                            run_roles(run, result.channels))
    run.write(result)
    return result


def name_analysis_channels(run: str | Path | Run, model: HPNet | None = None, progress: bool = False) -> bool:
    """Redraw the Fig. 4-6 of RUN/analysis.json with the channels named by their roles from
    RUN/dissect.json (what ``hpnet dissect`` calls after ``hpnet analyse``); the Fig. 4 mask maps are
    recomputed on its sample images. False, and nothing written, without both results."""
    run = Run.of(run)
    result = run.read(AnalysisResult)
    roles = run_roles(run, result.channels) if result is not None else None
    if roles is None:
        return False
    model = model if model is not None else run.model("cpu", needs_masks=True)
    data = run.split(result.images.get("fig4_split") or run.eval_split(), progress)
    images = data.images[result.images.get("fig4_samples", [])]
    names = list(model.attribute_names)
    attributes = [names.index(a) for a in result.fig4_attributes]
    top = torch.tensor([result.top_channels[a] for a in result.fig4_attributes], dtype=torch.long)
    write_analysis_figures(run.path, result, images, mask_maps(model, images, attributes, top), roles)
    return True
