"""The report's "Human predictability" section and its figures, from a predictability result."""
from __future__ import annotations

import base64
from html import escape
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..predictability.explainers import EXPLAINERS
from ..predictability.score import DEFINITION
from ..results import PredictabilityResult
from ..run import Run
from .figures import FIGURES_DIR, png_base64, save_png
from .markup import table
from .text import pct, score_text

FIGURES = {"pruning": "predictability_pruning.png", "transform": "predictability_transform.png",
           "localisation": "predictability_localisation.png"}


def write_predictability_figures(run_dir: str | Path, result: PredictabilityResult) -> dict[str, str]:
    """The scatter plots and localisation bars as PNG files in ``RUN/figures/``; returns {name: path}."""
    out = Path(run_dir) / FIGURES_DIR
    figs = {"pruning": fig_pruning(result), "transform": fig_transform(result),
            "localisation": fig_localisation(result)}
    return {name: str(save_png(fig, out / FIGURES[name])) for name, fig in figs.items() if fig is not None}


def fig_pruning(result: PredictabilityResult) -> Figure:
    """Predicted share of evidence pruned vs measured |logit change|, one panel per network."""
    pruning = result.pruning
    kinds = np.array([op["kind"] for op in pruning["operations"]])
    fig = Figure(figsize=(10.0, 4.3), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, name in zip(axes, ("attention", "plain")):
        entry = pruning[name]
        p, m = (np.asarray(entry["data"][key], dtype=float) for key in ("predicted", "logit"))
        floor = 1e-4 * max(np.nanmax(p), 1e-12), 1e-4 * max(np.nanmax(m), 1e-12)
        for kind, colour in (("single", "C0"), ("group", "C3")):
            sel = kinds == kind
            ax.scatter(np.maximum(p[sel].ravel(), floor[0]), np.maximum(m[sel].ravel(), floor[1]), s=6,
                       alpha=0.45, color=colour, label=f"{kind} channel{'s' if kind == 'group' else ''}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"predicted: share of the attribute's evidence pruned ({entry['predictor']})", fontsize=8.5)
        ax.set_ylabel("measured: mean |logit change| / logit std", fontsize=8.5)
        label = "attention network" if name == "attention" else "plain CNN"
        ax.set_title(f"{label}: Spearman {score_text(entry)}", fontsize=9.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Pruning predictability: each point is one (attribute, pruning operation) pair", fontsize=10)
    return fig


def fig_transform(result: PredictabilityResult) -> Figure | None:
    """Predicted vs measured signed logit change of the mask transformation, one colour per (n, beta)."""
    entry = (result.transform or {}).get("attention")
    if not entry:
        return None
    p, m = (np.asarray(entry["data"][key], dtype=float) for key in ("predicted", "logit"))
    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    ax = fig.subplots()
    for t, (n, b) in enumerate(entry["transforms"]):
        ax.scatter(p[t], m[t], s=10, alpha=0.7, color=f"C{t % 10}", marker="os^D"[t // 10 % 4],
                   label=f"n={n:g}, beta={b:g}")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_xlabel("predicted: sum_c w_kc (g(mean mask) - mean mask), per attribute evidence", fontsize=8.5)
    ax.set_ylabel("measured: mean logit change / logit std", fontsize=8.5)
    ax.set_title(f"Mask transformation predictability (attention network): Spearman {score_text(entry)}",
                 fontsize=9.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def fig_localisation(result: PredictabilityResult) -> Figure | None:
    """Share of each explanation's energy inside the evidence region, with 95% intervals and chance."""
    loc = result.localisation or {}
    if "chance" not in loc:
        return None
    methods = ["attention"] + list(EXPLAINERS)
    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    ax = fig.subplots()
    width, top = 0.38, loc["chance"]["score"]
    for j, (net, entries) in enumerate((("attention network", loc), ("plain CNN", loc.get("plain") or {}))):
        xs = [i + (j - 0.5) * width for i, m in enumerate(methods) if entries.get(m)]
        vals = [entries[m] for m in methods if entries.get(m)]
        heights = np.array([v["score"] if v["score"] is not None else np.nan for v in vals])
        err = np.array([[h - (v["ci_low"] if v["ci_low"] is not None else h) for h, v in zip(heights, vals)],
                        [(v["ci_high"] if v["ci_high"] is not None else h) - h for h, v in zip(heights, vals)]])
        ax.bar(xs, heights, width, yerr=err, capsize=3, color=f"C{j}", label=net)
        top = max([top] + [v["ci_high"] for v in vals if v["ci_high"] is not None])
    ax.axhline(loc["chance"]["score"], color="0.2", ls="--", lw=1.2, label="chance (region area share)")
    ax.set_xticks(range(len(methods)), ["attention masks\n(top channels)", "Grad-CAM (z)", "saliency",
                                        "patch permutation"], fontsize=8.5)
    ax.set_ylabel("energy share inside the evidence region")
    ax.set_ylim(0, min(1.0, 1.3 * top))
    ax.set_title(f"Localisation on {loc.get('images', '?')} synthetic faces", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return fig


def report_section(run: Run) -> str:
    """The "Human predictability" section (HTML) of a run's report."""
    result = run.read(PredictabilityResult)
    if result is None:
        return (f'<p class="note"><code>{PredictabilityResult.FILE}</code> is not in the run folder yet: run '
                f'<code>hpnet predictability {escape(str(run.path))}</code> to make it.</p>')
    parts = [f"<p>{escape(result.definition or DEFINITION)}</p>", _networks_table(result),
             _image(run.path, result, "pruning", fig_pruning), _variants_table(result),
             _image(run.path, result, "transform", fig_transform), _localisation_html(run.path, result),
             _regression_table(result), _settings_note(result)]
    return "".join(p for p in parts if p)


def _networks_table(result: PredictabilityResult) -> str:
    rows = []
    for name, label in (("attention", "attention network (the paper's)"), ("plain", "plain CNN (GAP + linear)")):
        pr = result.pruning.get(name) or {}
        tr = (result.transform or {}).get(name)
        acc = (result.accuracy or {}).get(name) or {}
        rows.append((label, pct(acc.get("mean_accuracy")), score_text(pr), score_text(pr.get("accuracy")),
                     score_text(pr.get("within_attribute")), score_text(tr) if tr else "- (no masks)",
                     pr.get("predictor", "-")))
    return ("<h3>Accuracy and predictability side by side</h3>"
            + table(["network", "mean accuracy", "pruning score (logit) [95% CI]",
                           "pruning score (accuracy) [95% CI]", "pruning, within attribute [95% CI]",
                           "transformation score (logit) [95% CI]", "human-side predictor"], rows)
            + '<p class="muted">Score: Spearman rho over (attribute, operation) pairs, primary measure the '
              'mean |logit change| in units of the attribute\'s logit standard deviation. Within attribute: '
              'rho across operations for each attribute, averaged (interval over attributes).</p>')


def _variants_table(result: PredictabilityResult) -> str:
    rows = [(net, name, score_text(s)) for net in ("attention", "plain")
            for name, s in (result.pruning.get(net) or {}).get("variants", {}).items()]
    return ('<p class="muted">Pruning score of other human-side predictors (same operations, logit change):</p>'
            + table(["network", "predictor", "score [95% CI]"], rows))


def _localisation_html(run_dir: Path, result: PredictabilityResult) -> str:
    loc = result.localisation or {}
    if "chance" not in loc:
        return f'<p class="muted">Localisation: {escape(str(loc.get("skipped", "not measured")))}.</p>'
    plain = loc.get("plain") or {}
    rows = []
    for m, label in (("attention", "attention masks (top channels)"), ("gradcam", "Grad-CAM on z"),
                     ("saliency", "saliency |d logit / d x|"), ("permutation", "patch permutation")):
        a, p = loc.get(m), plain.get(m)
        rows.append((label, score_text(a), score_text(p), _num(a, "pointing"), _num(p, "pointing")))
    rows.append(("chance (area share)", score_text(loc["chance"]), score_text(loc["chance"]),
                 _num(loc["chance"], "pointing"), _num(loc["chance"], "pointing")))
    return ("<h3>Localisation on synthetic faces</h3>"
            + f'<p class="muted">Share of each map\'s energy inside the attribute\'s evidence region, '
              f'mean over {loc.get("images")} images and all attributes (95% CI over images); pointing: '
              f'share of maps whose maximum lies inside. Explainers: {escape(str(loc.get("backend")))}.</p>'
            + table(["map", "attention network", "plain CNN", "pointing (attention net)",
                           "pointing (plain CNN)"], rows)
            + _image(run_dir, result, "localisation", fig_localisation))


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
    return (f'<p class="muted">{s.get("images")} {escape(str(s.get("split")))} images; '
            f'{s.get("groups")} random groups of {s.get("group_size")} channels and {s.get("singles")} single '
            f'channels pruned; human-side views from {s.get("usage_images")} {escape(str(s.get("usage_split")))} images; '
            f'{s.get("n_boot")} bootstrap resamples; {secs.get("total", 0):.0f} s.</p>')


def _image(run_dir: Path, result: PredictabilityResult, name: str, make) -> str:
    """The figure's PNG from RUN/figures/ when present, else drawn from the JSON."""
    png = run_dir / FIGURES_DIR / FIGURES[name]
    if png.is_file():
        data = base64.b64encode(png.read_bytes()).decode("ascii")
    else:
        fig = make(result)
        if fig is None:
            return ""
        data = png_base64(fig)
    return f'<img src="data:image/png;base64,{data}" alt="{escape(name)} predictability">'
