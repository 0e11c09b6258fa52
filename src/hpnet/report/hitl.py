"""The report's section on real people's predictions: the score ``hpnet hitl-score`` wrote and the
trials of ``hpnet serve``'s log plotted.

The section only renders: it reads the :class:`~hpnet.results.TrialScoreResult` of the run
(RUN/hitl/score.json) and never scores. A score that is missing, unreadable or stale against the
log (the log has changed since it was scored) is one line naming ``hpnet hitl-score RUN``; the
trials are plotted from the log all the same.
"""
from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..errors import HPNetError
from ..predictability.human import HITL_DIR, LOG_FILE, SIZE_LEVELS, read_trials, score_is_current
from ..results import TrialScoreResult
from ..run import Run
from .markup import figure, missing, note, table
from .text import HITL_ROWS, pct, score_text


def hitl_section(run: Run) -> str:
    """The person's, the formula's and the no-change score over the logged trials (as ``hpnet
    hitl-score`` wrote it), and the trials plotted."""
    log = run.path / HITL_DIR / LOG_FILE
    trials, warnings = read_trials(log)
    if not trials:
        return note(f"No trial logged yet: run <code>hpnet serve {escape(str(run.path))}</code>, open the page "
                    f"and predict (trials go to <code>{HITL_DIR}/{LOG_FILE}</code>).")
    html = (_score(run, log, len(trials))
            + figure(_scatter(trials), "people's and the formula's predictions against the measured change"))
    for warning in warnings:
        html += note(escape(warning))
    return html


def _score(run: Run, log: Path, trials: int) -> str:
    """The score's table; one line naming the command when the score is missing, unreadable or stale."""
    command = f"hpnet hitl-score {run.path}"
    try:
        result = run.read(TrialScoreResult)
    except HPNetError as e:
        return note(f"{escape(str(e))}; run <code>{escape(command)}</code> to score the trials again.")
    if result is None:
        return missing(TrialScoreResult.FILE, command)
    if not score_is_current(result, log):
        return note(f"<code>{TrialScoreResult.FILE}</code> is stale: the trial log has changed since it was scored "
                    f"({result.trials} trials then, {trials} now); run <code>{escape(command)}</code> to score "
                    f"it again.")
    data = result.to_json()
    rows = [[label, score_text(data[key]), pct(data[key].get("direction_agreement"))] for key, label in HITL_ROWS]
    for network, part in data["by_network"].items():
        rows += [[f"{label}, {network} ({part['trials']} trials)", score_text(part[key]),
                  pct(part[key].get("direction_agreement"))] for key, label in HITL_ROWS]
    return (f"<p>{data['trials']} trials, {data['pairs']} predictions. Rank score: Spearman's rho between "
            f"predicted and measured logit change (in logit standard deviations) over the (trial, attribute) "
            f"pairs, {100 * data['level']:g}% bootstrap interval over trials ({data['n_boot']} resamples); the "
            f"no-change baseline has no rank information (0). Direction: share of pairs whose direction (down, "
            f"none, up) is right. Scored by <code>hpnet hitl-score</code> into "
            f"<code>{TrialScoreResult.FILE}</code>.</p>"
            + table(["predictor", "rank score", "direction"], rows))


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
