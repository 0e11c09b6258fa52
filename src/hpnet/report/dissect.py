"""The dissection's figure and report section: each channel's face part, how the roles match the
attributes' evidence, and the Fig. 4 comparison of Smiling and Mouth_Slightly_Open."""
from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..results import DissectResult
from ..run import Run
from .figures import FIGURES_DIR, GRID_CMAP, save_png
from .markup import figure, missing, note, png_file, table

DISSECT_FIGURE = "dissect_roles.png"


def _order(result: DissectResult) -> list[int]:
    """Channels grouped by their part (in the order of the parts, "none" last), best IoU first."""
    rank = {p: i for i, p in enumerate([*result.parts, "none"])}
    return sorted(range(len(result.channels)),
                  key=lambda c: (rank.get(result.channels[c]["part"], len(rank)), -result.channels[c]["iou"], c))


def fig_dissect(result: DissectResult) -> Figure:
    """Left: IoU of every channel (columns, grouped by part) with every part (rows), a dot on each channel's
    named part; right: how many channels each part has."""
    iou = np.asarray(result.iou, dtype=float).reshape(len(result.channels), len(result.parts))
    order = _order(result)
    fig = Figure(figsize=(min(18.0, 4.0 + 0.12 * len(order)), 4.6), constrained_layout=True)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [max(4, len(order) // 6), 1.4]})
    im = left.imshow(iou[order].T, aspect="auto", cmap=GRID_CMAP, vmin=0, vmax=max(0.1, float(iou.max())),
                     interpolation="nearest")
    named = [(x, result.parts.index(result.channels[c]["part"])) for x, c in enumerate(order)
             if result.channels[c]["part"] in result.parts]
    if named:
        left.scatter(*zip(*named), s=8, c="white", marker="o", linewidths=0)
    left.set_yticks(range(len(result.parts)), result.parts, fontsize=8)
    step = max(1, len(order) // 32)
    left.set_xticks(range(0, len(order), step), [str(order[i]) for i in range(0, len(order), step)], fontsize=6,
                    rotation=90)
    left.set_xlabel("channel (grouped by its part)")
    threshold = result.settings.get("threshold", "?")
    left.set_title(f"IoU of each channel's top {_top(result)} with each part (dot: its part, IoU >= {threshold})",
                   fontsize=9)
    fig.colorbar(im, ax=left, shrink=0.8, label="IoU")
    roles = result.roles()
    names = [p for p in [*result.parts, "none"] if p in roles]
    right.barh(range(len(names)), [len(roles[p]) for p in names], color="#4c72b0")
    right.set_yticks(range(len(names)), names, fontsize=8)
    right.invert_yaxis()
    right.set_xlabel("channels")
    right.set_title("channels per part", fontsize=9)
    return fig


def _top(result: DissectResult) -> str:
    q = result.settings.get("quantile")
    return f"{100 * (1 - q):.3g}%" if isinstance(q, (int, float)) else "quantile"


def write_dissect_figures(run_dir: str | Path, result: DissectResult) -> dict[str, str]:
    """RUN/figures/dissect_roles.png; returns {"roles": path relative to the run}."""
    name = f"{FIGURES_DIR}/{DISSECT_FIGURE}"
    save_png(fig_dissect(result), Path(run_dir) / name)
    return {"roles": name}


def dissect_section(run: Run) -> str:
    result = run.read(DissectResult)
    if result is None:
        return missing(DissectResult.FILE, f"hpnet dissect {run.path}")
    png = run.path / FIGURES_DIR / DISSECT_FIGURE
    named = sum(c["part"] != "none" for c in result.channels)
    html = (f"<p>{named} of {len(result.channels)} channels ({100 * named / max(1, len(result.channels)):.0f}%) "
            f"have a face part: the part whose segmentation best overlaps (IoU) the region where the channel "
            f"fires (its top {_top(result)} of activations), when that IoU is at least "
            f"{result.settings.get('threshold')}; on {result.images} {escape(str(result.split or ''))} images, "
            f"parts from {escape(str(result.part_source))}.</p>")
    html += png_file(png, "channel roles") if png.is_file() else figure(fig_dissect(result), "channel roles")
    rows = [(part, len(chans), ", ".join(_channel(result.channels[c]) for c in chans))
            for part, chans in result.roles().items()]
    html += table(["part", "channels", "channel (IoU [95% interval over images])"], rows, [False, True, False])
    return html + _consistency(result.consistency) + _fig4(result.fig4)


def _channel(c: dict) -> str:
    return f"{c['channel']} ({c['iou']:.2f} [{c['iou_ci_low']:.2f}, {c['iou_ci_high']:.2f}])"


def _consistency(c: dict) -> str:
    if c.get("score") is None:
        return note("No attribute of this run has its evidence in a face part, so the roles are not "
                    "compared with the attributes.")
    html = (f"<h3>Roles against the attributes' evidence</h3><p>On average {100 * c['score']:.1f}% of an "
            f"attribute's evidence (|w| x mean mask) sits on channels whose part is where the attribute's "
            f"evidence lies; dealing the same roles to the channels at random gives {100 * c['chance']:.1f}% "
            f"(p = {c['p_value']:.3g} over random deals; {c['attributes']} attributes; left out, having no "
            f"part: {escape(', '.join(c['left_out']) or 'none')}).</p>")
    rows = [(r["attribute"], ", ".join(r["parts"]), f"{100 * r['share']:.1f}%", f"{100 * r['chance']:.1f}%")
            for r in c["per_attribute"]]
    return html + table(["attribute", "its parts", "evidence on their channels", "random roles"], rows,
                        [False, False, True, True])


def _fig4(f: dict) -> str:
    html = "<h3>Fig. 4: Smiling and Mouth_Slightly_Open</h3>"
    if "skipped" in f:
        return html + note(escape(f["skipped"]))
    rows = [(a, ", ".join(f"{e['channel']} ({e['part']})" for e in f["top"][a]), f["mouth"][a])
            for a in f["attributes"]]
    shared = ", ".join(f"{e['channel']} ({e['part']})" for e in f["shared"]) or "none"
    return html + table(["attribute", f"top {f['k']} channels by evidence (part)", "mouth channels among them"],
                        rows, [False, False, True]) + f"<p>Shared by both: {escape(shared)}.</p>"
