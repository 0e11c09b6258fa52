"""The report's "Human predictability" section and its figures, from a predictability result.

Everything here iterates over the result's operations and networks (and the registry for the words
about each operation): a new operation appears with its table rows and its figure.
"""
from __future__ import annotations

import base64
from html import escape
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..errors import HPNetError
from ..operations import OPERATIONS
from ..predictability.score import DEFINITION
from ..results import PredictabilityResult
from ..run import Run
from .figures import FIGURES_DIR, png_base64, save_png
from .markup import table
from .text import pct, score_text

LOCALISATION_FIGURE = "predictability_localisation.png"
METHODS = (("attention", "attention masks (top channels)"), ("pooled", "g(M)z (what the classifier pools)"),
           ("gradcam", "Grad-CAM on z"),
           ("saliency", "saliency |d logit / d x|"), ("permutation", "patch permutation"))


def figure_file(operation: str) -> str:
    return f"predictability_{operation}.png"


def write_predictability_figures(run_dir: str | Path, result: PredictabilityResult) -> dict[str, str]:
    """One scatter plot per operation and the localisation bars as PNG files in ``RUN/figures/``."""
    out = Path(run_dir) / FIGURES_DIR
    figs = {figure_file(op): fig_operation(result, op) for op in result.operations}
    figs[LOCALISATION_FIGURE] = fig_localisation(result)
    return {name: str(save_png(fig, out / name)) for name, fig in figs.items() if fig is not None}


def _group(op_json: dict, only: str | None = None) -> str:
    """The colour group of one scored operation: its parameters other than the channels, and how many
    (``only``: that one of them)."""
    parts = {k: f"{k}={_short(v)}" for k, v in op_json.items() if k not in ("operation", "channels")}
    if "channels" in op_json:
        count = len(op_json["channels"])
        parts = {"channels": f"{count} channel{'s' if count > 1 else ''}", **parts}
    if only is not None:
        parts = {k: v for k, v in parts.items() if k == only}
    return ", ".join(parts.values()) or op_json.get("operation", "")


def _groups(operations: list[dict], most: int = 12) -> list[str]:
    """Each operation's colour group; with more than ``most`` groups (e.g. every part at every factor),
    grouped by the one parameter with the fewest values instead."""
    groups = [_group(o) for o in operations]
    if len(set(groups)) <= most or not operations:
        return groups
    keys = {k for o in operations for k in _group_keys(o)}
    fewest = min(sorted(keys), key=lambda k: len({_group(o, k) for o in operations}))
    return [_group(o, fewest) for o in operations]


def _group_keys(op_json: dict) -> list[str]:
    return [k for k in op_json if k != "operation"]


def _short(v) -> str:
    if isinstance(v, list):
        return f"{v[0]:g}" if v and len(set(v)) == 1 else "per attribute"
    return f"{v:g}" if isinstance(v, float) else str(v)


def fig_operation(result: PredictabilityResult, operation: str) -> Figure | None:
    """Predicted against measured change of one operation, one panel per network, one colour per group."""
    entries = {name: e for name, e in (result.operations.get(operation) or {}).items() if e}
    if not entries:
        return None
    signed = next(iter(entries.values())).get("measure") == "signed logit"
    fig = Figure(figsize=(5.2 * len(entries) + 1.6, 4.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(entries)))
    for ax, (name, entry) in zip(axes, entries.items()):
        p, m = (np.asarray(entry["data"][key], dtype=float) for key in ("predicted", "logit"))
        groups = _groups(entry.get("operations", [{}] * len(p)))
        for g, label in enumerate(dict.fromkeys(groups)):
            rows = [i for i, x in enumerate(groups) if x == label]
            x, y = p[rows].ravel(), m[rows].ravel()
            if not signed:
                x, y = np.maximum(x, 1e-4 * max(np.nanmax(p), 1e-12)), np.maximum(y, 1e-4 * max(np.nanmax(m), 1e-12))
            ax.scatter(x, y, s=8, alpha=0.55, color=f"C{g % 10}", marker="os^D"[g // 10 % 4], label=label)
        if signed:
            ax.axhline(0, color="0.5", lw=0.8)
            ax.axvline(0, color="0.5", lw=0.8)
        else:
            ax.set_xscale("log")
            ax.set_yscale("log")
        what = "signed change" if signed else "size of the change"
        ax.set_xlabel(f"predicted from the card: {what} ({entry['predictor']})", fontsize=8.5)
        ax.set_ylabel(f"measured: mean {'' if signed else '|'}logit change{'' if signed else '|'} / logit std",
                      fontsize=8.5)
        ax.set_title(f"{name}: Spearman {score_text(entry)}", fontsize=9.5)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    title = OPERATIONS.get(operation).title if operation in OPERATIONS else operation
    fig.suptitle(f"{title}: each point is one (attribute, operation) pair", fontsize=10)
    return fig


def fig_localisation(result: PredictabilityResult) -> Figure | None:
    """Share of each explanation's energy inside the evidence region, with 95% intervals and chance."""
    nets = {name: loc for name, loc in (result.localisation or {}).items() if isinstance(loc, dict) and "chance" in loc}
    if not nets:
        return None
    chance = next(iter(nets.values()))["chance"]
    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    ax = fig.subplots()
    width, top = 0.8 / len(nets), chance["score"]
    for j, (name, loc) in enumerate(nets.items()):
        vals = [(i, loc[m]) for i, (m, _) in enumerate(METHODS) if loc.get(m) and loc[m].get("score") is not None]
        xs = [i + (j - (len(nets) - 1) / 2) * width for i, _ in vals]
        heights = np.array([v["score"] for _, v in vals])
        err = np.array([[h - (v["ci_low"] if v["ci_low"] is not None else h) for h, (_, v) in zip(heights, vals)],
                        [(v["ci_high"] if v["ci_high"] is not None else h) - h for h, (_, v) in zip(heights, vals)]])
        ax.bar(xs, heights, width, yerr=err.reshape(2, -1), capsize=3, color=f"C{j}", label=name)
        top = max([top] + [v["ci_high"] for _, v in vals if v["ci_high"] is not None])
    ax.axhline(chance["score"], color="0.2", ls="--", lw=1.2, label="chance (region area share)")
    ax.set_xticks(range(len(METHODS)), [label.replace(" (", "\n(") for _, label in METHODS], fontsize=8)
    ax.set_ylabel("energy share inside the evidence region")
    ax.set_ylim(0, min(1.0, 1.3 * top))
    images = next(iter(nets.values())).get("images", "?")
    ax.set_title(f"Localisation on {images} synthetic faces", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return fig


def report_section(run: Run) -> str:
    """The "Human predictability" section (HTML) of a run's report."""
    try:
        result = run.read(PredictabilityResult)
    except HPNetError as e:                 # written by an older hpnet, or damaged: say so, do not crash
        return f'<p class="note">{escape(str(e))}: run <code>hpnet predictability {escape(str(run.path))}</code> again.</p>'
    if result is None:
        return (f'<p class="note"><code>{PredictabilityResult.FILE}</code> is not in the run folder yet: run '
                f'<code>hpnet predictability {escape(str(run.path))}</code> to make it.</p>')
    parts = [f"<p>{escape(result.definition or DEFINITION)}</p>", _networks_table(result), _scores_table(result)]
    parts += [_image(run.path, figure_file(op), lambda r, op=op: fig_operation(r, op), result)
              for op in result.operations]
    parts += [_variants_table(result), _localisation_html(run.path, result), _regression_table(result),
              _settings_note(result)]
    return "".join(p for p in parts if p)


def _networks_table(result: PredictabilityResult) -> str:
    ops = list(result.operations)
    rows = []
    for name, info in result.networks.items():
        acc = (result.accuracy or {}).get(name) or {}
        scores = [score_text((result.operations[op] or {}).get(name)) if (result.operations[op] or {}).get(name)
                  else "- (no masks)" for op in ops]
        rows.append([name, info.get("role", "-"), pct(acc.get("mean_accuracy")), *scores])
    headers = ["network", "role", "mean accuracy"] + [f"{_title(op)} [95% CI]" for op in ops]
    return ("<h3>Accuracy and predictability side by side</h3>" + table(headers, rows)
            + '<p class="muted">Score: Spearman rho over (attribute, operation) pairs between the change predicted '
              'from the operation\'s card and the measured change of the logit, in units of the attribute\'s logit '
              'standard deviation; 95% bootstrap interval over the pairs.</p>')


def _scores_table(result: PredictabilityResult) -> str:
    rows = []
    for op, per_network in result.operations.items():
        for name, e in per_network.items():
            if e:
                rows.append([_title(op), name, e.get("measure", "-"), score_text(e), score_text(e.get("accuracy")),
                             score_text(e.get("within_attribute")), len(e.get("operations", [])), e.get("predictor")])
    words = "".join(f"<li><b>{escape(f.title)}</b> ({escape(f.name)}): {escape(f.summary)} Shown: {escape(f.shown)} "
                    f"Formula: <code>{escape(f.formula_text)}</code></li>"
                    for f in (OPERATIONS.get(op) for op in result.operations if op in OPERATIONS))
    return ("<h3>Each operation</h3><ul>" + words + "</ul>"
            + table(["operation", "network", "measured", "score (logit) [95% CI]", "score (accuracy) [95% CI]",
                     "within attribute [95% CI]", "operations", "predictor"], rows)
            + '<p class="muted">Measured: the mean |logit change| ranked against the predicted size, or the mean '
              'signed change against the predicted signed change. Within attribute: rho across operations for '
              'each attribute, averaged (interval over attributes).</p>')


def _title(op: str) -> str:
    return OPERATIONS.get(op).title if op in OPERATIONS else op


def _variants_table(result: PredictabilityResult) -> str:
    rows = [(_title(op), net, name, score_text(s)) for op, per_network in result.operations.items()
            for net, e in per_network.items() if e for name, s in (e.get("variants") or {}).items()]
    return ('<p class="muted">Scores of other human-side predictors (same operations, same measurement):</p>'
            + table(["operation", "network", "predictor", "score [95% CI]"], rows))


def _localisation_html(run_dir: Path, result: PredictabilityResult) -> str:
    nets = result.localisation or {}
    measured = {name: loc for name, loc in nets.items() if isinstance(loc, dict) and "chance" in loc}
    if not measured:
        skipped = next((loc.get("skipped") for loc in nets.values() if isinstance(loc, dict)), "not measured")
        return f'<p class="muted">Localisation: {escape(str(skipped))}.</p>'
    chance = next(iter(measured.values()))["chance"]
    rows = [[label] + [f"{score_text(loc.get(m))} ({_num(loc.get(m), 'pointing')})" for loc in measured.values()]
            for m, label in METHODS]
    rows.append(["chance (area share)"] + [f"{score_text(chance)} ({_num(chance, 'pointing')})"] * len(measured))
    first = next(iter(measured.values()))
    return ("<h3>Localisation on synthetic faces</h3>"
            + f'<p class="muted">Share of each map\'s energy inside the attribute\'s evidence region, mean over '
              f'{first.get("images")} images and all attributes (95% CI over images); in brackets, pointing: the '
              f'share of maps whose maximum lies inside. Explainers: {escape(str(first.get("backend")))}.</p>'
            + table(["map"] + list(measured), rows)
            + _image(run_dir, LOCALISATION_FIGURE, fig_localisation, result))


def _num(entry: dict | None, key: str) -> str:
    return "-" if not entry or entry.get(key) is None else f"{entry[key]:.3f}"


def _regression_table(result: PredictabilityResult) -> str:
    detail = result.regression_detail or {}
    rows = [(b, score_text(d), f"{d.get('spread', 0):.3f}") for b, d in detail.items()]
    return ("<h3>Calibration: the regression example (Eq. 3-7)</h3><p class=\"muted\">Change one coefficient; "
            "predict the change as that basis function alone in orthonormal components.</p>"
            + table(["basis", "score [95% CI]", "spread"], rows))


def _settings_note(result: PredictabilityResult) -> str:
    s = result.settings or {}
    secs = result.seconds or {}
    return (f'<p class="muted">{s.get("images")} {escape(str(s.get("split")))} images; channel sets: '
            f'{s.get("groups")} random groups of {s.get("group_size")} channels and {s.get("singles")} single '
            f'channels; human-side views from {s.get("usage_images")} {escape(str(s.get("usage_split")))} images; '
            f'{s.get("n_boot")} bootstrap resamples; {secs.get("total", 0):.0f} s.</p>')


def _image(run_dir: Path, file: str, make, result: PredictabilityResult) -> str:
    """The figure's PNG from RUN/figures/ when present, else drawn from the JSON."""
    png = run_dir / FIGURES_DIR / file
    if png.is_file():
        data = base64.b64encode(png.read_bytes()).decode("ascii")
    else:
        fig = make(result)
        if fig is None:
            return ""
        data = png_base64(fig)
    return f'<img src="data:image/png;base64,{data}" alt="{escape(file)}">'

