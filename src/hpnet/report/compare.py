"""The comparison's page: every configuration's metrics with their intervals over seeds, and figures."""
from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..io import atomic_write_text
from ..operations import OPERATIONS
from ..results import CompareResult
from .html import CSS
from .markup import figure, table
from .text import interval_text

REPORT_FILE = "report.html"
# the table's columns after the predictability scores: metric key, header, shown as a percentage
COLUMNS = [("localisation_masks", "localisation: masks", False), ("localisation_gradcam", "Grad-CAM", False),
           ("localisation_saliency", "saliency", False), ("localisation_chance", "chance", False),
           ("semantic_minus_random", "semantic - random at 50% (reconstructed)", True),
           ("semantic_minus_random_plain", "semantic - random at 50% (plain removal)", True),
           ("mask_mean", "mean mask", False), ("mask_sparsity", "masks < 0.1", True)]


def score_columns(result: CompareResult) -> list[tuple[str, str, bool]]:
    """Accuracy, then every operation's score columns the comparison holds (``<operation>_score`` and
    ``<operation>_score_<predictor>``), then :data:`COLUMNS`."""
    keys = dict.fromkeys(k for c in result.configs for k in c["metrics"] if "_score" in k)
    return ([("accuracy", "test accuracy", True)]
            + [(k, _score_header(k), False) for k in keys] + COLUMNS)


def _score_header(key: str) -> str:
    op, _, predictor = key.partition("_score")
    title = OPERATIONS.get(op).title.lower() if op in OPERATIONS else op
    return f"predictability: {title}" + (f" ({predictor.lstrip('_').replace('_', ' ')})" if predictor else "")


def write_compare_report(out: str | Path, result: CompareResult) -> Path:
    """``OUT/report.html``: the comparison as tables and figures, self-contained."""
    out = Path(out)
    columns = score_columns(result)
    rows = [[c["name"]] + [interval_text(c["metrics"].get(key), pct) for key, _, pct in columns]
            for c in result.configs]
    stds = result.settings.get("noise_stds") or []
    noise_rows = [[c["name"]] + [f"{interval_text(c['metrics'].get(f'noise_{s:g}'), True)} | "
                                 f"{interval_text(c['metrics'].get(f'noise_{s:g}_tone_curve'), True)}"
                                 for s in stds] for c in result.configs]
    seeds = result.settings.get("seeds", [])
    body = (f'<p>{len(result.configs)} configurations, each trained with seeds {", ".join(map(str, seeds))} on the '
            f'same data and budget; every metric is the mean over seeds with a 95% Student-t interval '
            f'[low, high] (values per seed in <code>compare.json</code>). Predictability is Spearman\'s rho '
            f'between the change a person predicts and the measured change, for every operation, by each '
            f'network\'s primary predictor (networks with masks: mean mask x |w|; plain CNN: |w| x mean '
            f'activation) and, in brackets, by the predictor the operation defines alike for every network. '
            f'Localisation is the share of a map\'s energy inside the attribute\'s evidence region.</p>'
            + table(["configuration"] + [h for _, h, _ in columns], rows, [False] + [True] * len(columns))
            + figure(fig_scores(result), "predictability and accuracy")
            + "<h2>Accuracy under input noise</h2><p class=\"muted\">Each cell: the network as it is | with the "
              "per-attribute tone curve chosen on validation images at that noise std (heads with masks).</p>"
            + table(["configuration"] + [f"noise std {s:g}" for s in stds], noise_rows)
            + figure(fig_noise(result), "accuracy under noise"))
    html = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>hpnet comparison: '
            f'{escape(out.resolve().name)}</title><style>{CSS}</style></head><body><h1>hpnet comparison: '
            f'{escape(out.resolve().name)}</h1>{body}</body></html>\n')
    path = out / REPORT_FILE
    atomic_write_text(html, path)
    return path


def _errorbar(ax, y: float, m: dict | None, color: str, label: str | None) -> None:
    if not m or m.get("mean") is None:
        return
    low, high = m.get("ci_low", m["mean"]), m.get("ci_high", m["mean"])
    ax.errorbar([m["mean"]], [y], xerr=[[m["mean"] - low], [high - m["mean"]]], fmt="o", color=color, capsize=3,
                label=label)
    values = [v for v in (m.get("values") or []) if v is not None]
    ax.plot(values, [y] * len(values), "x", color=color, alpha=0.5, ms=4)


def fig_scores(result: CompareResult) -> Figure:
    """Accuracy, pruning and transformation predictability per configuration, with their intervals."""
    panels = [(key, header.removeprefix("predictability: ")) for key, header, _ in score_columns(result)
              if key == "accuracy" or key.endswith("_score")]
    names = [c["name"] for c in result.configs]
    fig = Figure(figsize=(12.5, 1.2 + 0.42 * len(names)), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True)
    for ax, (key, title) in zip(axes, panels):
        for i, c in enumerate(result.configs):
            _errorbar(ax, i, c["metrics"].get(key), f"C{i % 10}", None)
        ax.set_title(title, fontsize=9.5)
        ax.grid(alpha=0.3)
    axes[0].set_yticks(range(len(names)), names, fontsize=8.5)
    axes[0].invert_yaxis()
    fig.suptitle("Mean over seeds (dot), 95% interval (bar), each seed (x)", fontsize=10)
    return fig


def fig_noise(result: CompareResult) -> Figure:
    """Accuracy against input noise std: solid the network as it is, dashed with the chosen tone curve."""
    stds = np.asarray(result.settings.get("noise_stds") or [], dtype=float)
    fig = Figure(figsize=(8.5, 4.4), layout="constrained")
    ax = fig.subplots()
    for i, c in enumerate(result.configs):
        plain = [(c["metrics"].get(f"noise_{s:g}") or {}).get("mean") for s in stds]
        tone = [(c["metrics"].get(f"noise_{s:g}_tone_curve") or {}).get("mean") for s in stds]
        ax.plot(stds, [np.nan if v is None else 100 * v for v in plain], "o-", color=f"C{i % 10}", label=c["name"])
        if any(v is not None for v in tone):
            ax.plot(stds, [np.nan if v is None else 100 * v for v in tone], "s--", color=f"C{i % 10}", alpha=0.7)
    ax.set_xlabel("Gaussian noise std (images in [0, 1])")
    ax.set_ylabel("mean test accuracy (%)")
    ax.set_title("Accuracy under noise (dashed: per-attribute tone curve chosen on validation)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
