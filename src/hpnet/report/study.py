"""A study's report: ``hpnet report STUDY`` renders the score ``hpnet study score`` wrote.

It reads STUDY/score.json (:class:`~hpnet.results.StudyScoreResult`) and never scores: a missing
score is one line naming ``hpnet study score STUDY``. Plots: each network's people's predictions
against the measured change (and the formula's), and the learning curve.
"""
from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..errors import HPNetError
from ..io import atomic_write_text, read_json
from ..predictability.human import SIZE_LEVELS
from ..results import StudyScoreResult
from .html import CSS
from .markup import figure, missing, note, table
from .text import accuracy_text, score_text

REPORT_FILE = "report.html"
WHO = (("person", "people"), ("formula", "formula"), ("no_change", "no change"))


def write_study_report(study: str | Path, out: str | Path | None = None) -> Path:
    """Write STUDY/report.html (or ``out``) from STUDY/score.json; returns its path."""
    study = Path(study)
    out = Path(out) if out is not None else study / REPORT_FILE
    path = study / StudyScoreResult.FILE
    if not path.is_file():
        body = missing(StudyScoreResult.FILE, f"hpnet study score {study}")
    else:
        result = StudyScoreResult.from_json(read_json(path), str(path))
        try:
            body = study_body(result)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise HPNetError(f"{path}: cannot be shown in the report, its contents are malformed ({e})") from None
    title = f"hpnet study: {study.resolve().name}"
    atomic_write_text(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
                      f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>\n", out)
    return out


def study_body(result: StudyScoreResult) -> str:
    r = result.to_json()
    head = (f"<p>{r['participants']} participants joined, {r['consented']} consented, {r['finished']} finished; "
            f"{r['included']} scored and {len(r['excluded'])} excluded ({escape(r['exclusion']['rule'])}; attention "
            f"checks passed: {_pct(r['exclusion'].get('pass_rate'))}). {r['scored_answers']} test answers, "
            f"{r['pairs']} predictions scored. Rank score: Spearman's rho between the predicted and the measured "
            f"change; direction: share of right directions (down, none, up). Intervals: {100 * r['level']:g}% "
            f"bootstrap over participants and items jointly ({r['n_boot']} resamples).</p>")
    rows = []
    for label, net in r["networks"].items():
        for key, who in WHO:
            rows.append([f"{label} = {net['identity']}" if key == "person" else "", who, score_text(net[key]),
                         accuracy_text(net[key])])
    html = head + table(["network", "who", "rank score", "direction right"], rows)
    if r["paired"]:
        html += "<h3>The same people on two networks</h3>" + table(
            ["networks", "rank score difference", "direction difference (points)"],
            [[f"{p['a']} minus {p['b']}", score_text({"score": p["score_difference"], "ci_low": p["ci_low"],
                                                       "ci_high": p["ci_high"]}),
              _points(p)] for p in r["paired"]])
    ratings = [[label, f"{net['rating']['mean']:.2f}", str(net["rating"]["n"])]
               for label, net in r["networks"].items() if net.get("rating", {}).get("n")]
    if ratings:
        html += "<h3>How predictable each network felt (1-7)</h3>" + table(["network", "mean", "people"], ratings)
    if any(net.get("points", {}).get("person") for net in r["networks"].values()):
        html += figure(_scatter(r["networks"]), "people's and the formula's predictions against the measured change")
    if r["learning_curve"]:
        html += figure(_curve(r["learning_curve"]), "direction right by position in the order")
    for pid, why in r["excluded"].items():
        html += note(f"participant {escape(pid)} excluded: {escape(why)}")
    return html


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _points(p: dict) -> str:
    d, low, high = p["direction_accuracy_difference"], p["direction_ci_low"], p["direction_ci_high"]
    if d is None:
        return "-"
    return f"{100 * d:+.1f}" + (f" [{100 * low:+.1f}, {100 * high:+.1f}]" if low is not None else "")


def _scatter(networks: dict) -> Figure:
    shown = {label: net["points"] for label, net in networks.items() if net.get("points", {}).get("person")}
    fig = Figure(figsize=(3.3 * len(shown), 3.2))
    axes = np.atleast_1d(fig.subplots(1, len(shown)))
    for ax, (label, points) in zip(axes, shown.items()):
        person = np.asarray(points["person"], dtype=float)
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, person.size)
        ax.scatter(person + jitter, points["measured"], s=10, alpha=0.5, label="people")
        ax.set_xticks(range(-3, 4), [f"{'-' if v < 0 else '+'}{SIZE_LEVELS[abs(v)]}" if v else "none"
                                     for v in range(-3, 4)], fontsize=6, rotation=45)
        ax.axhline(0, color="#999", lw=0.6)
        ax.set_title(f"network {label}", fontsize=9)
        ax.set_xlabel("predicted: direction x size", fontsize=8)
    axes[0].set_ylabel("measured logit change (std)", fontsize=8)
    fig.tight_layout()
    return fig


def _curve(curve: list[dict]) -> Figure:
    fig = Figure(figsize=(6, 2.8))
    ax = fig.subplots()
    x = [c["position"] for c in curve]
    mean = np.array([np.nan if c["mean"] is None else c["mean"] for c in curve], dtype=float)
    low = np.array([np.nan if c["ci_low"] is None else c["ci_low"] for c in curve], dtype=float)
    high = np.array([np.nan if c["ci_high"] is None else c["ci_high"] for c in curve], dtype=float)
    ax.plot(x, 100 * mean, marker="o")
    ax.fill_between(x, 100 * low, 100 * high, alpha=0.2)
    learn = [c["position"] for c in curve if c["phase"] == "learn"]
    if learn:
        ax.axvspan(min(learn) - 0.5, max(learn) + 0.5, color="#eee", label="learning (feedback)")
        ax.legend(fontsize=7)
    ax.set_xlabel("position in the participant's order")
    ax.set_ylabel("direction right (%)")
    fig.tight_layout()
    return fig
