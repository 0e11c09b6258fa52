"""One self-contained HTML page for a run: every figure and table the commands have written.

The page reads the run folder through :class:`~hpnet.run.Run` and its result types (run.json, the
evaluations, analysis, pruning, robustness and predictability results, the people's score, and the
PNG figures the commands wrote) and never imports the trainer. Figures are embedded as base64 PNG
and the CSS is inline, so the file can be mailed or archived alone. A section whose result is
missing says which command makes it. The regression example (paper Eq. 3-7) is computed on the
fly; the people's score is not (``hpnet hitl-score`` writes it; one older than the trial log is
named stale).
"""
from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path

from .. import checks
from ..checkpoint import RUN_FILE
from ..errors import HPNetError
from ..io import atomic_write_text, check_output
from ..results import (
    AnalysisResult,
    DissectResult,
    EvaluationResult,
    PredictabilityResult,
    PruningResult,
    RobustnessResult,
    TrialScoreResult,
)
from ..run import Run
from .dissect import dissect_section
from .hitl import hitl_section
from .predictability import report_section
from .regression import regression_section
from .sections import (
    accuracy_section,
    analysis_sections,
    pruning_section,
    robustness_section,
    settings_section,
    training_section,
)

SECTIONS = {
    "settings": "Settings and data",
    "training": "Training",
    "accuracy": "Accuracy per attribute",
    "fig4": "Fig. 4: attention masks of the top channels",
    "fig5": "Fig. 5: mean attention mask per attribute and channel",
    "fig6": "Fig. 6: channel correlation",
    "table4": "Table 4: attributes with correlated attention",
    "dissect": "Channel roles: the face part where each channel fires",
    "fig7": "Fig. 7: semantic channel pruning",
    "fig8": "Fig. 8: robustness with the mask transformation",
    "regression": "Regression example (Eq. 3-7)",
    "predictability": "Human predictability, measured",
    "hitl": "Predictions by people (hpnet serve)",
}
REPORT_FILE = "report.html"

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1150px; margin: 2em auto; padding: 0 1.2em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2.2em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
nav ol { columns: 2; font-size: 0.95em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td:first-child { white-space: nowrap; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.good td.diff { color: #17693a; } tr.bad td.diff { color: #a31515; }
img { max-width: 100%; height: auto; display: block; margin: 0.8em 0; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 0.9em; }
.muted { color: #666; font-size: 0.9em; }
code { background: #f4f4f4; padding: 0 0.25em; }
"""


def write_report(run_dir: str | Path, out: str | Path | None = None,
                 extra_sections: Sequence[tuple[str, str]] = ()) -> Path:
    """Write the run's report as one HTML file (default ``RUN/report.html``); returns its path.

    ``extra_sections``: (title, HTML body) pairs appended after the built-in sections; the
    body is inserted as given (trusted HTML from library code), the title is escaped.
    """
    run = Run.open(run_dir)
    out = check_output(checks.path(out, "--out"), "--out", folder=False) if out else run.file(REPORT_FILE)
    evaluations = run.evaluations()
    baseline = evaluations[0].mean_majority_baseline if evaluations else None
    bodies = {"settings": _render(settings_section, run.record, source=run.file(RUN_FILE)),
              "training": _render(training_section, run.record, source=run.file(RUN_FILE)),
              "accuracy": _render(accuracy_section, evaluations, run, source=run.file(EvaluationResult.PATTERN)),
              **_render(analysis_sections, run, source=run.file(AnalysisResult.FILE)),
              "dissect": _render(dissect_section, run, source=run.file(DissectResult.FILE)),
              "fig7": _render(pruning_section, run, baseline, source=run.file(PruningResult.FILE)),
              "fig8": _render(robustness_section, run, baseline, source=run.file(RobustnessResult.FILE)),
              "regression": regression_section(),
              "predictability": _render(report_section, run, source=run.file(PredictabilityResult.FILE)),
              "hitl": _render(hitl_section, run, source=run.file(TrialScoreResult.FILE))}
    sections = [(key, SECTIONS[key], bodies[key]) for key in SECTIONS]
    sections += [(f"extra{i}", title, body) for i, (title, body) in enumerate(extra_sections)]
    atomic_write_text(_page(run.path, run.record, sections), out)
    return out


def _render(section, *args, source: Path):
    """A section's HTML; a result whose contents the section cannot draw is one line naming its file."""
    try:
        return section(*args)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise HPNetError(f"{source}: cannot be shown in the report, its contents are malformed "
                         f"({type(e).__name__}: {e})") from None


def _page(run_dir: Path, record: dict, sections: list[tuple[str, str, str]]) -> str:
    title = f"hpnet report: {run_dir.resolve().name}"
    model = record.get("model") or {}
    data = record.get("data") or {}
    subtitle = (f"{escape(str(data.get('dataset', '?')))} data, {escape(str(model.get('backbone', '?')))} "
                f"backbone, {len(model.get('attribute_names') or [])} attributes; run folder "
                f"<code>{escape(str(run_dir))}</code>")
    nav = "".join(f'<li><a href="#{key}">{escape(t)}</a></li>' for key, t, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{escape(t)}</h2>{html}</section>' for key, t, html in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{escape(title)}</h1><p class=\"muted\">{subtitle}</p>"
            f"<nav><ol>{nav}</ol></nav>{body}</body></html>\n")
