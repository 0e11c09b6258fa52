"""The report's section on real people's predictions, from the trial log of ``hpnet serve``."""
from __future__ import annotations

from html import escape

import numpy as np
from matplotlib.figure import Figure

from ..predictability.human import HITL_DIR, LOG_FILE, SIZE_LEVELS, read_trials, score_trials
from ..results import json_ready
from ..run import Run
from .markup import figure, note, table
from .text import HITL_ROWS, pct, score_text


def hitl_section(run: Run, n_boot: int = 1000) -> str:
    """The person's, the formula's and the no-change score over the logged trials, and the trials plotted."""
    log = run.path / HITL_DIR / LOG_FILE
    trials, warnings = read_trials(log)
    if not trials:
        return note(f"No trial logged yet: run <code>hpnet serve {escape(str(run.path))}</code>, open the page "
                    f"and predict (trials go to <code>{HITL_DIR}/{LOG_FILE}</code>).")
    result = json_ready(score_trials(trials, n_boot))
    rows = [[label, score_text(result[key]), pct(result[key].get("direction_agreement"))] for key, label in HITL_ROWS]
    for network, part in result["by_network"].items():
        rows += [[f"{label}, {network} ({part['trials']} trials)", score_text(part[key]),
                  pct(part[key].get("direction_agreement"))] for key, label in HITL_ROWS]
    html = (f"<p>{result['trials']} trials, {result['pairs']} predictions. Rank score: Spearman's rho between "
            f"predicted and measured logit change (in logit standard deviations) over the (trial, attribute) "
            f"pairs, 95% bootstrap interval over trials; the no-change baseline has no rank information (0). "
            f"Direction: share of pairs whose direction (down, none, up) is right.</p>"
            + table(["predictor", "rank score", "direction"], rows)
            + figure(_scatter(trials), "people's and the formula's predictions against the measured change"))
    for warning in warnings:
        html += note(escape(warning))
    return html


def _scatter(trials: list[dict]) -> Figure:
    measured = np.concatenate([t["measured"] for t in trials])
    person = np.concatenate([t["person"] for t in trials]).astype(float)
    formula = np.concatenate([t["formula"] for t in trials])
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, person.size)
    fig = Figure(figsize=(8, 3.4))
    left, right = fig.subplots(1, 2)
    left.scatter(person + jitter, measured, s=12, alpha=0.6)
    left.set_xticks(range(-3, 4), [f"{d}{SIZE_LEVELS[abs(v)]}" if v else "none"
                                   for v in range(-3, 4) for d in ["-" if v < 0 else "+"]], fontsize=7)
    left.set_xlabel("person: direction x size")
    right.scatter(formula, measured, s=12, alpha=0.6, color="tab:orange")
    right.set_xlabel("formula: predicted change (share of evidence)")
    for ax in (left, right):
        ax.axhline(0, color="#999", lw=0.6)
        ax.set_ylabel("measured logit change (std)")
    fig.tight_layout()
    return fig
