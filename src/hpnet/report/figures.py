"""The paper's figures as matplotlib Figures, from plain arrays and the JSON the commands write.

- Fig. 4: per-image attention mask maps of each attribute's top channels (:func:`fig4_mask_maps`).
- Fig. 5: the K x C grid of mean mask values (:func:`fig5_mean_mask_grid`).
- Fig. 6: the C x C channel correlation, raw and cluster-ordered (:func:`fig6_channel_correlation`).

Fig. 4 and 6 name each channel by its role, the face part where it fires ("12 mouth"), when given the
roles (:mod:`hpnet.report.roles`, from RUN/dissect.json).
- Fig. 7: accuracy against channels pruned, per method (:func:`fig7_pruning`).
- Fig. 8: accuracy against input noise, per mask transformation (n, beta) (:func:`fig8_robustness`).
- the training curve (:func:`fig_training`); the regression example's figures are in
  :mod:`hpnet.report.regression`.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state) from result types and plain
arrays; the Agg backend is set at import so that nothing needs a display.
:func:`write_analysis_figures` writes ``hpnet analyse``'s figures into ``RUN/figures/``.
"""
from __future__ import annotations

import base64
import io
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..io import atomic_write_bytes, atomic_write_text  # noqa: E402
from ..results import AnalysisResult, PruningResult, RobustnessResult  # noqa: E402
from .roles import channel_label, part_legend, part_strip  # noqa: E402
from .text import table4_markdown  # noqa: E402

FIGURES_DIR = "figures"
# the files of ``hpnet analyse``'s figures in RUN/figures/, by the name the report uses
ANALYSIS_FIGURES = {"fig4": "fig4_mask_maps.png", "fig5": "fig5_mean_masks.png",
                    "fig6": "fig6_channel_correlation.png", "table4": "table4_attribute_correlation.md"}
DPI = 110
MASK_CMAP = "inferno"
GRID_CMAP = "viridis"
CORR_CMAP = "RdBu_r"


# ----------------------------------------------------------------------------------------------
# output


def figure_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_png(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write the figure as a PNG atomically (temporary name in the same folder, then rename); closes it."""
    path = Path(path)
    atomic_write_bytes(figure_bytes(fig, dpi), path)
    close(fig)
    return path


def png_base64(fig: Figure, dpi: int = DPI, close_figure: bool = True) -> str:
    """The figure as a base64 PNG string, for ``<img src="data:image/png;base64,...">``."""
    data = base64.b64encode(figure_bytes(fig, dpi)).decode("ascii")
    if close_figure:
        close(fig)
    return data


def close(fig: Figure) -> None:
    """Release a figure (also one made through pyplot)."""
    import matplotlib.pyplot as plt
    plt.close(fig)


def _numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=float)


def _tick_step(n: int, most: int = 40) -> int:
    """A tick every ``step`` items so that at most ``most`` labels show."""
    return max(1, int(np.ceil(n / most)))


def _label_size(n: int) -> float:
    """Font size for n category labels on one axis: 9 for a few, down to 7.5 for 40."""
    return float(np.clip(10 - n / 14, 7.5, 9))


# ----------------------------------------------------------------------------------------------
# Fig. 4-6: attention masks and channel correlation


def fig4_mask_maps(images, maps, attribute_names: Sequence[str], channel_ids, alpha: float = 0.55,
                   images_per_row: int = 2, roles: Sequence[str] | None = None) -> Figure:
    """Fig. 4: for each attribute, sample images and their top channels' mask maps over them.

    images: uint8 (n, 3, S, S); maps: (n, A, k, S, S) mask values in [0, 1];
    attribute_names: the A attributes; channel_ids: (A, k) channel ids shown as "ch 25", or with
    ``roles`` (C,: each channel's face part or "none") as "ch 25 mouth".
    Rows are grouped by attribute, ``images_per_row`` image blocks (input + k maps) side by side.
    The tiles are composed into one picture (one axes), which keeps large grids fast to draw.
    """
    images = np.asarray(images.cpu() if hasattr(images, "cpu") else images)
    maps, ids = _numpy(maps), np.asarray(_numpy(channel_ids), dtype=int)
    n, A, k, S = maps.shape[0], maps.shape[1], maps.shape[2], images.shape[-1]
    per_row = max(1, min(images_per_row, n))
    layout = _Fig4Layout(S, k, per_row)
    rows = [(a, list(range(i, min(i + per_row, n)))) for a in range(A) for i in range(0, n, per_row)]
    canvas = np.ones((len(rows) * layout.pitch_y, layout.width, 3))
    inch = 1.2 / S                                                     # a tile is 1.2 inches wide
    left, right, top, bottom = 1.5, 1.0, 0.55, 0.1
    w, h = canvas.shape[1] * inch, canvas.shape[0] * inch
    fig = Figure(figsize=(left + w + right, top + h + bottom))
    W, H = fig.get_size_inches()
    ax = fig.add_axes((left / W, bottom / H, w / W, h / H))
    for r, (a, block) in enumerate(rows):
        y0 = r * layout.pitch_y + layout.gy
        if block[0] == 0 or r == 0:
            ax.text(-2 * layout.gx, y0 + S / 2, textwrap.fill(_pretty(attribute_names[a]), 13), ha="right",
                    va="center", fontsize=9.5, weight="bold")
        for b, i in enumerate(block):
            x0 = b * layout.block
            _paint_block(canvas, images[i], maps[i, a], x0, y0, layout, alpha)
            labels = [f"image {i + 1}"] + [channel_label(c, roles, "ch ") for c in ids[a]]
            for t, label in enumerate(labels):
                ax.text(x0 + t * (S + layout.gx) + S / 2, y0 - 0.12 * layout.gy, label, ha="center",
                        va="bottom", fontsize=8.5 if len(label) <= 13 else 7.5, color="0.4" if t == 0 else "black")
    ax.imshow(canvas, interpolation="antialiased")
    ax.set_axis_off()
    named = "; each named by the face part where it fires" if roles is not None else ""
    fig.suptitle(f"Fig. 4: attention masks of the top {k} channels per attribute "
                 f"(rank: mean mask value x |w_k|{named})", fontsize=10, y=1 - 0.12 / H, va="top")
    bar_h = min(h * 0.5, 3.0)
    bar_ax = fig.add_axes(((left + w + 0.25) / W, (bottom + (h - bar_h) / 2) / H, 0.15 / W, bar_h / H))
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), MASK_CMAP), cax=bar_ax)
    bar.set_label("mask value", fontsize=8.5)
    return fig


class _Fig4Layout:
    """Pixel geometry of the Fig. 4 mosaic: tiles of S px, gaps, image blocks of 1 + k tiles."""

    def __init__(self, S: int, k: int, per_row: int):
        self.gx, self.gy = max(1, S // 12), max(2, round(0.24 * S))
        self.tiles_w = (k + 1) * (S + self.gx) - self.gx
        self.block = self.tiles_w + max(3, S // 3)                     # a wider gap between images
        self.width = per_row * self.block - (self.block - self.tiles_w)
        self.pitch_y = S + self.gy
        self.S = S


def _paint_block(canvas: np.ndarray, image: np.ndarray, maps: np.ndarray, x0: int, y0: int,
                 layout: _Fig4Layout, alpha: float) -> None:
    """The input image, then each of its k mask maps blended over it, left to right."""
    S = layout.S
    rgb = image.transpose(1, 2, 0) / 255.0
    canvas[y0:y0 + S, x0:x0 + S] = rgb
    cmap = matplotlib.colormaps[MASK_CMAP]
    for j, m in enumerate(maps):
        x = x0 + (j + 1) * (S + layout.gx)
        canvas[y0:y0 + S, x:x + S] = (1 - alpha) * rgb + alpha * cmap(np.clip(m, 0, 1))[..., :3]


def _pretty(name: str) -> str:
    return name.replace("_", " ")


def fig5_mean_mask_grid(grid, names: Sequence[str]) -> Figure:
    """Fig. 5: the mean mask value of every (attribute, channel) pair as a K x C heat map."""
    grid = _numpy(grid)
    K, C = grid.shape
    fig = Figure(figsize=(min(4.0 + 0.09 * C, 24), 1.6 + 0.2 * K), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(grid, aspect="auto", cmap=GRID_CMAP, interpolation="nearest")
    ax.set_yticks(range(K), [_pretty(n) for n in names], fontsize=_label_size(K))
    step = _tick_step(C, 32)
    ax.set_xticks(range(0, C, step), [str(c) for c in range(0, C, step)], fontsize=7.5)
    ax.set_xlabel("channel id")
    ax.set_ylabel("attribute")
    ax.set_title(f"Fig. 5: mean attention mask per attribute and channel ({K} x {C})", fontsize=10)
    fig.colorbar(im, ax=ax, pad=0.01, fraction=0.04).set_label("mean mask value")
    return fig


def fig6_channel_correlation(corr, order: Sequence[int], roles: Sequence[str] | None = None) -> Figure:
    """Fig. 6: the C x C Pearson correlation of channels, raw and in cluster order, side by side; with
    ``roles`` (C,: each channel's face part or "none") the ticks read "12 mouth", a row of part
    colours tops each panel and a legend names the parts."""
    corr = np.nan_to_num(_numpy(corr))
    order = np.asarray(order, dtype=int)
    C = corr.shape[0]
    fig = Figure(figsize=(12.5, 6.6 if roles is None else 7.0), layout="constrained")
    axes = fig.subplots(1, 2)
    step = _tick_step(C, 16)
    panels = ((np.arange(C), "channel id order"), (order, "cluster order (average linkage on 1 - r)"))
    for ax, (idx, title) in zip(axes, panels):
        im = ax.imshow(corr[np.ix_(idx, idx)], cmap=CORR_CMAP, vmin=-1, vmax=1, interpolation="nearest")
        ticks = np.arange(0, C, step)
        labels = [channel_label(int(i), roles) for i in idx[ticks]]
        ax.set_xticks(ticks, labels, fontsize=7, rotation=90)
        ax.set_yticks(ticks, labels, fontsize=7)
        ax.set_xlabel("channel id" if roles is None else "channel (and the face part where it fires)")
        ax.set_ylabel("channel id")
        ax.set_title(title, fontsize=9.5, pad=12 if roles is not None else 6)
        if roles is not None:
            part_strip(ax, roles, idx)
    fig.suptitle(f"Fig. 6: correlation between the {C} feature channels", fontsize=10)
    fig.colorbar(im, ax=list(axes), shrink=0.85, pad=0.01).set_label("Pearson r")
    if roles is not None:
        part_legend(fig, roles, loc="outside lower center")
    return fig


# ----------------------------------------------------------------------------------------------
# Fig. 7-8: operations


def _percent(values) -> np.ndarray:
    return 100.0 * np.asarray(values, dtype=float)


def fig7_pruning(result: PruningResult, majority_baseline: float | None = None) -> Figure:
    """Fig. 7: mean accuracy against the number of channels pruned, one line per method.

    ``result.methods`` holds ``{"semantic": [[pruned, acc], ...], "random": [[pruned, mean, std],
    ...], ...}``. The random baseline is drawn with a mean +- std band; the majority-class baseline
    (``majority_baseline`` or the result's own) is dashed. With reconstructed classifiers, a second
    panel (same y axis) shows the plain removal (``methods_heads_unchanged``).
    """
    panels = [(result.methods, "classifiers reconstructed" if result.reconstructed else "")]
    if result.methods_heads_unchanged:
        panels.append((result.methods_heads_unchanged, "classifiers unchanged (plain removal)"))
    fig = Figure(figsize=(6.0 + 4.0 * len(panels), 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    baseline = majority_baseline if majority_baseline is not None else result.majority_baseline
    channels = result.channels
    for ax, (methods, title) in zip(axes, panels):
        _pruning_panel(ax, methods, result.rule, result.correlation)
        if baseline is not None:
            ax.axhline(100 * baseline, color="0.3", ls="--", lw=1.2, label="majority class")
        ax.set_xlabel(f"channels pruned (of {channels})" if channels else "channels pruned")
        ax.set_title(title, fontsize=9.5)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean accuracy (%)")
    fig.suptitle("Fig. 7: accuracy while pruning feature channels", fontsize=10)
    axes[-1].legend(fontsize=8.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _pruning_panel(ax, methods: dict, rule: str | None, correlation: str | None) -> None:
    for i, (method, rows) in enumerate(methods.items()):
        rows = np.asarray(rows, dtype=float).reshape(len(rows), -1)
        if not len(rows):
            continue
        color = f"C{i}"
        ax.plot(rows[:, 0], _percent(rows[:, 1]), color=color, lw=2 if method == "semantic" else 1.4,
                marker="o" if len(rows) <= 20 else None, ms=3, label=_method_label(method, rule, correlation))
        if rows.shape[1] > 2:
            lo, hi = _percent(rows[:, 1] - rows[:, 2]), _percent(rows[:, 1] + rows[:, 2])
            ax.fill_between(rows[:, 0], lo, hi, color=color, alpha=0.2, label=f"{method} mean +- std")


def _method_label(method: str, rule: str | None = None, correlation: str | None = None) -> str:
    """Legend text: "semantic (contributions, lower)", "L1 magnitude", "least attended first", ..."""
    if method.startswith("semantic"):
        variant = method.partition("_")[2]
        kind = variant if variant in ("contributions", "features") else (correlation or "features")
        how = variant if variant in ("lower", "higher") else (rule or "lower")
        return f"semantic ({kind}, rule {how})"
    return {"l1": "L1 magnitude", "attention": "least attended first"}.get(method, method)


def robustness_curves(result: RobustnessResult) -> dict[tuple[float, float], np.ndarray]:
    """{(n, beta): array of (noise_std, accuracy) rows sorted by noise} of a robustness result."""
    curves: dict[tuple[float, float], list] = {}
    for r in result.results:
        curves.setdefault((float(r["n"]), float(r["beta"])), []).append((r["noise_std"], r["accuracy"]))
    return {key: np.asarray(sorted(rows), dtype=float) for key, rows in sorted(curves.items())}


def fig8_robustness(result: RobustnessResult, majority_baseline: float | None = None) -> Figure:
    """Fig. 8: mean accuracy against input noise std, one line per (n, beta); identity in black.

    ``result.results`` holds ``[{"n", "beta", "noise_std", "accuracy"}, ...]``; the majority-class
    baseline, when given, is a dashed line.
    """
    fig = Figure(figsize=(9.0, 4.6), layout="constrained")
    ax = fig.subplots()
    colour = 0
    for (n, beta), rows in robustness_curves(result).items():
        label = f"n={n:g}, beta={beta:g}"
        if n == 1 and beta == 0:
            ax.plot(rows[:, 0], _percent(rows[:, 1]), color="black", lw=2.6, marker="o", ms=4,
                    label=label + " (identity)", zorder=5)
        else:
            ax.plot(rows[:, 0], _percent(rows[:, 1]), color=f"C{colour % 10}", lw=1.4, marker=".",
                    label=label)
            colour += 1
    if majority_baseline is not None:
        ax.axhline(100 * majority_baseline, color="0.3", ls="--", lw=1.2, label="majority class")
    ax.set_xlabel("Gaussian noise std (images in [0, 1])")
    ax.set_ylabel("mean accuracy (%)")
    ax.set_title("Fig. 8: robustness with the attention mask transformation g(M; n, beta)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2 if colour > 14 else 1, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def fig_training(history: Sequence[dict]) -> Figure:
    """Training loss (left axis) and validation mean accuracy (right axis) per epoch."""
    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    ax = fig.subplots()
    epochs = [h["epoch"] for h in history]
    lines = ax.plot(epochs, [h["loss"] for h in history], "o-", color="C0", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (Eq. 10)", color="C0")
    valid = [(h["epoch"], h["valid_mean_accuracy"]) for h in history if "valid_mean_accuracy" in h]
    if valid:
        ax2 = ax.twinx()
        e, acc = zip(*valid)
        lines += ax2.plot(e, _percent(acc), "s-", color="C1", label="validation mean accuracy")
        ax2.set_ylabel("validation mean accuracy (%)", color="C1")
    ax.set_title("Training", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8.5, loc="center right")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


# ----------------------------------------------------------------------------------------------
# the files of hpnet analyse


def write_analysis_figures(run_dir: str | Path, result: AnalysisResult, images, maps,
                           roles: Sequence[str] | None = None) -> dict[str, str]:
    """Fig. 4, 5, 6 as PNG and Table 4 as Markdown into ``RUN/figures/``; returns {name: path
    relative to the run folder}. ``images`` and ``maps`` are Fig. 4's samples and mask maps; with
    ``roles`` (each channel's face part or "none") Fig. 4 and 6 name the channels by them."""
    out = Path(run_dir) / FIGURES_DIR
    names = result.attribute_names
    ids = [result.top_channels[n] for n in result.fig4_attributes]
    figs = {"fig4": fig4_mask_maps(images, maps, result.fig4_attributes, ids, roles=roles),
            "fig5": fig5_mean_mask_grid(result.mean_mask_grid, names),
            "fig6": fig6_channel_correlation(result.channel_correlation, result.cluster_order, roles)}
    for name, fig in figs.items():
        save_png(fig, out / ANALYSIS_FIGURES[name])
    atomic_write_text(table4_markdown(result.attribute_table), out / ANALYSIS_FIGURES["table4"])
    return {name: f"{FIGURES_DIR}/{file}" for name, file in ANALYSIS_FIGURES.items()}
