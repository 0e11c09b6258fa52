"""``hpnet analyse``: Fig. 4, 5, 6 and Table 4 of a run, as analysis.json and figures."""
from __future__ import annotations

from pathlib import Path

from ..analysis.attention import AnalysisSettings, analyse
from ..report.figures import write_analysis_figures
from ..results import AnalysisResult
from ..run import Run


def analyse_run(run: str | Path | Run, settings: AnalysisSettings | None = None, device: str = "auto",
                progress: bool = True) -> AnalysisResult:
    """The mean-mask grid and Fig. 4 from the evaluation split ("test", or "valid" when test is
    empty), the channel correlation from the training split; writes RUN/analysis.json and
    RUN/figures/ (Fig. 4-6 as PNG, Table 4 as Markdown)."""
    run = Run.of(run)
    model = run.model(device, needs_masks=True)
    split, data = run.eval_data(progress=progress)
    train = run.split("train", progress)
    result, fig4 = analyse(model, data, train, settings, progress)
    result.run = str(run.path)
    result.images.update(mean_mask_split=split, channel_correlation_split="train", fig4_split=split)
    result.figures = write_analysis_figures(run.path, result, fig4.images, fig4.maps)
    run.write(result)
    return result
