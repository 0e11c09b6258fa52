"""The comparison's page (every configuration's metrics with their intervals over seeds, and figures)
and the text table ``hpnet compare`` prints."""
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
# the tables after accuracy and predictability: metric key, header, shown as a percentage
ROLE_COLUMNS = [("roles_share", "channels with a part", True), ("consistency", "consistency", False),
                ("consistency_chance", "chance (random roles)", False),
                ("consistency_minus_chance", "consistency - chance", False)]
LOCALISATION_COLUMNS = [("localisation_masks", "masks (top 3)", False), ("localisation_pooled", "g(M)z pooled", False),
                        ("localisation_gradcam", "Grad-CAM", False), ("localisation_saliency", "saliency", False),
                        ("localisation_chance", "chance", False)]
PRUNING_COLUMNS = [("semantic_minus_random", "semantic - random at 50% (reconstructed)", True),
                   ("semantic_minus_random_plain", "semantic - random at 50% (plain removal)", True),
                   ("mask_mean", "mean mask", False), ("mask_sparsity", "masks < 0.1", True)]
COLUMNS = ROLE_COLUMNS + LOCALISATION_COLUMNS + PRUNING_COLUMNS
ROLES_NOTE = ("Roles: each channel's face part by NetDissect IoU (<code>hpnet dissect</code>'s defaults, on the "
              "images the operations' view is read from), \"none\" below the threshold. Consistency: the "
              "share of each attribute's evidence |w<sub>kc</sub>| x mean mask<sub>kc</sub> (heads without "
              "masks: |w<sub>kc</sub>| x mean |GAP(z)<sub>c</sub>|) on channels whose part lies in the "
              "attribute's evidence region, averaged over the attributes that have one; chance: its expectation "
              "when the same roles are dealt to the channels at random. Localisation (synthetic faces): the "
              "share of a map's energy inside the attribute's evidence region; masks: the masks of the "
              "attribute's top 3 channels; g(M)z: what the classifier pools, sum<sub>c</sub> "
              "|w<sub>kc</sub> g(M<sub>kc</sub>) z<sub>c</sub>| (without masks sum<sub>c</sub> "
              "|w<sub>kc</sub>| |z<sub>c</sub>|); chance: the region's area share.")


def score_columns(result: CompareResult) -> list[tuple[str, str, bool]]:
    """Accuracy, then every operation's score columns the comparison holds (``<operation>_score`` and
    ``<operation>_score_<predictor>``)."""
    keys = dict.fromkeys(k for c in result.configs for k in c["metrics"] if "_score" in k)
    return [("accuracy", "test accuracy", True)] + [(k, _score_header(k), False) for k in keys]


def _score_header(key: str) -> str:
    op, _, predictor = key.partition("_score")
    title = OPERATIONS.get(op).title.lower() if op in OPERATIONS else op
    return f"predictability: {title}" + (f" ({predictor.lstrip('_').replace('_', ' ')})" if predictor else "")


def _table(result: CompareResult, columns: list[tuple[str, str, bool]]) -> str:
    rows = [[c["name"]] + [interval_text(c["metrics"].get(key), pct) for key, _, pct in columns]
            for c in result.configs]
    return table(["configuration"] + [h for _, h, _ in columns], rows, [False] + [True] * len(columns))


def format_compare(result: CompareResult) -> str:
    """The comparison's headline numbers as text, one configuration a line, in three blocks:
    accuracy and predictability, the channels' roles, localisation (what `hpnet compare` prints)."""
    keys = [("accuracy", "accuracy", True)] + [(k, k.removesuffix("_score"), False) for k, _, _ in
                                              score_columns(result) if k.endswith("_score")]
    width = max([len("configuration")] + [len(c["name"]) for c in result.configs])
    blocks = []
    for title, columns in (("", keys), ("channel roles (face parts) and semantic consistency:", ROLE_COLUMNS),
                           ("localisation (energy share inside the evidence region):", LOCALISATION_COLUMNS)):
        cells = [[interval_text(c["metrics"].get(k), pct) for k, _, pct in columns] for c in result.configs]
        if title and all(v == "-" for row in cells for v in row):
            continue                                        # e.g. data without face parts or regions
        sizes = [max([len(h) + 2] + [len(row[j]) + 2 for row in cells]) for j, (_, h, _) in enumerate(columns)]
        lines = [title] if title else []
        lines.append(f"{'configuration':<{width}}  " + "".join(f"{h:<{n}}" for (_, h, _), n in zip(columns, sizes)))
        lines += [f"{c['name']:<{width}}  " + "".join(f"{v:<{n}}" for v, n in zip(row, sizes))
                  for c, row in zip(result.configs, cells)]
        blocks.append("\n".join(line.rstrip() for line in lines))
    return "\n\n".join(blocks)


def write_compare_report(out: str | Path, result: CompareResult) -> Path:
    """``OUT/report.html``: the comparison as tables and figures, self-contained."""
    out = Path(out)
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
            f'activation) and, in brackets, by the predictor the operation defines alike for every network.</p>'
            + _table(result, score_columns(result))
            + figure(fig_scores(result), "predictability and accuracy")
            + f'<h2>Channel roles and localisation</h2><p class="muted">{ROLES_NOTE}</p>'
            + _table(result, ROLE_COLUMNS) + _table(result, LOCALISATION_COLUMNS)
            + figure(fig_roles(result), "semantic consistency and localisation against chance")
            + "<h2>Pruning and masks</h2>" + _table(result, PRUNING_COLUMNS)
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


def fig_roles(result: CompareResult) -> Figure:
    """Semantic consistency against its random-roles chance, and each localisation against the area
    share, per configuration (mean over seeds, 95% interval, each seed)."""
    panels = [("semantic consistency", [("consistency", "consistency", "C0"),
                                        ("consistency_chance", "chance (random roles)", "0.5")]),
              ("localisation", [("localisation_masks", "masks (top 3)", "C1"), ("localisation_pooled", "g(M)z", "C2"),
                                ("localisation_gradcam", "Grad-CAM", "C3"), ("localisation_chance", "chance", "0.5")])]
    names = [c["name"] for c in result.configs]
    fig = Figure(figsize=(10.5, 1.4 + 0.5 * len(names)), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (title, series) in zip(axes, panels):
        for j, (key, label, color) in enumerate(series):
            offset = (j - (len(series) - 1) / 2) * 0.15
            for i, c in enumerate(result.configs):
                _errorbar(ax, i + offset, c["metrics"].get(key), color, label if i == 0 else None)
        ax.set_title(title, fontsize=9.5)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=len(series), frameon=False)
    axes[0].set_yticks(range(len(names)), names, fontsize=8.5)
    axes[0].invert_yaxis()
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
