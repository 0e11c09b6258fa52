"""The report's sections for the paper's tables and figures, each rendered from the run's results.

Every section takes the :class:`~hpnet.run.Run` (or its record) and reads its result types through
``Run.read``; a result that is not there yet gives a note naming the command that makes it.
"""
from __future__ import annotations

import json
from html import escape

import numpy as np

from ..results import AnalysisResult, EvaluationResult, PruningResult, RobustnessResult
from ..run import Run
from . import figures as F
from .markup import figure, kv_table, missing, note, png_file, table, value
from .roles import run_roles
from .text import pct

PRUNE_FRACTIONS = (0.0, 0.25, 0.5, 0.75)


def _backbone(model: dict) -> str:
    """The backbone's name, with a ResNet's stem, a module's class, and the width left by pruning."""
    name = str(model.get("backbone", "-"))
    if name == "module":
        name += f" {model.get('module', '?')}({json.dumps(model.get('module_kwargs') or {})})"
    elif name.startswith("resnet"):
        name += f" (stem {model.get('stem', '-')}; torchvision's names)"
    if model.get("pruned_to"):
        name += f", pruned to {model['pruned_to']} channels of z"
    return name


def settings_section(record: dict) -> str:
    data = record.get("data") or {}
    model = record.get("model") or {}
    train = record.get("train") or {}
    attrs = model.get("attribute_names") or data.get("attributes") or []
    rows = [
        ("dataset", data.get("dataset", "-")), ("root", data.get("root") or "(built in)"),
        ("image size", data.get("image_size", "-")), ("max images", value(data.get("max_images"))),
        ("data seed / valid fraction", f"{data.get('seed', '-')} / {data.get('valid_fraction', '-')}"),
        ("training / validation images", f"{record.get('train_images', '-')} / {record.get('valid_images', '-')}"),
        ("attributes", f"{len(attrs)}: " + ", ".join(attrs)),
        ("backbone", _backbone(model)), ("widths", value(model.get("widths"))),
        ("head", model.get("head", "-")), ("||M||_1 normalisation", model.get("l1_norm", "-")),
        ("epochs (done)", f"{train.get('epochs', '-')} ({record.get('epochs_done', '-')})"),
        ("batch size / lr / L1 lambda",
         f"{train.get('batch_size', '-')} / {train.get('lr', '-')} / {train.get('l1_lambda', '-')}"),
        ("status", record.get("status", "-")),
    ]
    masks = record.get("masks")
    if masks:
        rows.append(("masks after training", f"mean {masks['mean']:.3f}, {100 * masks['sparsity']:.1f}% below "
                     f"{masks['threshold']} (on {masks['images']} images)"))
    return table(["setting", "value"], rows)


def training_section(record: dict) -> str:
    history = record.get("history") or []
    if not history:
        return note("No finished epoch yet: run <code>hpnet train</code> (or <code>--resume</code>).")
    last = history[-1]
    speed = f"{last['images_per_s']:.0f} images/s, {last['seconds']:.1f} s per epoch" \
        if "images_per_s" in last and "seconds" in last else ""
    return figure(F.fig_training(history), "training curve") + (f'<p class="muted">last epoch: {speed}</p>'
                                                                if speed else "")


def accuracy_section(evaluations: list[EvaluationResult], run: Run) -> str:
    if not evaluations:
        return missing(EvaluationResult.file_for("<split>"), f"hpnet eval {run.path}")
    return "".join(_accuracy_table(result) for result in evaluations)


def _accuracy_table(result: EvaluationResult) -> str:
    rows, classes = [], []
    for r in result.per_attribute:
        diff = r["accuracy"] - r["majority_baseline"]
        rows.append((r["name"], pct(r["accuracy"]), pct(r["majority_baseline"]),
                     (f"{100 * diff:+.2f}", "num diff"), r.get("positives", "-")))
        classes.append("good" if diff > 0 else "bad" if diff < 0 else "")
    rows.append(("mean", pct(result.mean_accuracy), pct(result.mean_majority_baseline),
                 (f"{100 * (result.mean_accuracy - result.mean_majority_baseline):+.2f}", "num diff"), ""))
    classes.append("")
    head = (f"<h3>{escape(result.split)} split, {result.images} images "
            f"<span class=\"muted\">({escape(result.file_name)})</span></h3>")
    return head + table(["attribute", "accuracy", "majority class", "difference (points)", "positives"],
                        rows, [False, True, True, True, True], classes)


def analysis_sections(run: Run) -> dict[str, str]:
    """Fig. 4, 5, 6 and Table 4: the PNG files ``hpnet analyse`` wrote, else drawn from its result."""
    analysis = run.read(AnalysisResult)
    if analysis is None:
        hint = missing(AnalysisResult.FILE, f"hpnet analyse {run.path}")
        return {key: hint for key in ("fig4", "fig5", "fig6", "table4")}
    figs = run.path / F.FIGURES_DIR
    out = {"fig4": _fig4(analysis, run)}
    fig5 = figs / F.ANALYSIS_FIGURES["fig5"]
    out["fig5"] = (png_file(fig5, "Fig. 5") if fig5.is_file()
                   else figure(F.fig5_mean_mask_grid(analysis.mean_mask_grid, analysis.attribute_names), "Fig. 5"))
    fig6 = figs / F.ANALYSIS_FIGURES["fig6"]
    out["fig6"] = (png_file(fig6, "Fig. 6") if fig6.is_file() else
                   figure(F.fig6_channel_correlation(analysis.channel_correlation, analysis.cluster_order,
                                                     run_roles(run, analysis.channels)), "Fig. 6"))
    images = analysis.images
    out["fig5"] += (f'<p class="muted">Mean over {images.get("mean_mask_grid", "?")} '
                    f'{escape(str(images.get("mean_mask_split", "")))} images and all positions; '
                    f'backbone {escape(str(analysis.backbone))}.</p>')
    out["fig6"] += (f'<p class="muted">Pearson correlation of the feature channels over '
                    f'{images.get("channel_correlation", "?")} training images and all positions.</p>')
    out["table4"] = _table4(analysis.attribute_table)
    return out


def _fig4(analysis: AnalysisResult, run: Run) -> str:
    """Fig. 4 needs the sample images, which only the PNG holds: a hint when it is missing."""
    name = f"{F.FIGURES_DIR}/{F.ANALYSIS_FIGURES['fig4']}"
    png = run.path / name
    if not png.is_file():
        return missing(name, f"hpnet analyse {run.path}")
    roles = run_roles(run, analysis.channels)
    label = (lambda c: f"{c} ({roles[c]})") if roles is not None else str
    rows = [(n, ", ".join(label(c) for c in analysis.top_channels.get(n, []))) for n in analysis.fig4_attributes]
    head = "top channels (mean mask x |w_k|)" + (" and where each fires" if roles is not None else "")
    return png_file(png, "Fig. 4") + table(["attribute", head], rows)


def _table4(rows_in: list[dict]) -> str:
    rows = [(row["attribute"], ", ".join(f"{t['name']} ({t['correlation']:.2f})" for t in row["top"]))
            for row in rows_in]
    return ('<p class="muted">Pearson correlation between the attributes\' rows of Fig. 5.</p>'
            + table(["attribute", "most correlated attributes (r)"], rows))


def pruning_section(run: Run, baseline: float | None) -> str:
    result = run.read(PruningResult)
    if result is None:
        return missing(PruningResult.FILE, f"hpnet prune {run.path}")
    html = figure(F.fig7_pruning(result, baseline), "Fig. 7")
    tables = [(result.methods, "")]
    if result.reconstructed:
        html += ('<p class="muted">Each pruned model\'s classifiers (w_k, b_k) are refitted by least '
                 'squares to the original model\'s logits on training images (no labels, extractor and '
                 'masks unchanged). The second table is the plain removal, classifiers unchanged.</p>')
        tables = [(result.methods, "classifiers reconstructed"),
                  (result.methods_heads_unchanged or {}, "classifiers unchanged (plain removal)")]
    for methods, title in tables:
        html += (f"<h3>{title}</h3>" if title else "") + _pruning_table(methods, result.channels)
    if isinstance(result.physical, dict):
        html += "<h3>Physical pruning</h3>" + _before_after(result.physical)
    return html + "<h3>Settings</h3>" + kv_table(result.to_json(), skip=("methods", "methods_heads_unchanged",
                                                                         "physical", "filter_l1"))


def _pruning_table(methods: dict, channels: int | None) -> str:
    """Mean accuracy of each method at PRUNE_FRACTIONS of the channels pruned (interpolated)."""
    rows = []
    for method, curve in methods.items():
        curve = np.asarray(curve, dtype=float).reshape(len(curve), -1)
        if not len(curve):
            continue
        total = channels or curve[:, 0].max()
        rows.append([method] + [pct(np.interp(f * total, curve[:, 0], curve[:, 1])) for f in PRUNE_FRACTIONS])
    return table(["method"] + [f"{int(100 * f)}% pruned" for f in PRUNE_FRACTIONS], rows,
                 [False] + [True] * len(PRUNE_FRACTIONS))


def _before_after(physical: dict) -> str:
    """Rows "params", "macs", ... from keys ``<name>_before`` / ``<name>_after``, then the rest."""
    names = [k[:-7] for k in physical if k.endswith("_before") and f"{k[:-7]}_after" in physical]
    rows = [(n.replace("_", " "), value(physical[f"{n}_before"]), value(physical[f"{n}_after"])) for n in names]
    paired = {f"{n}_{t}" for n in names for t in ("before", "after")}
    html = table(["", "before", "after"], rows, [False, True, True])
    return html + kv_table({k: v for k, v in physical.items() if k not in paired})


def robustness_section(run: Run, baseline: float | None) -> str:
    result = run.read(RobustnessResult)
    if result is None:
        return missing(RobustnessResult.FILE, f"hpnet robust {run.path}")
    html = figure(F.fig8_robustness(result, baseline), "Fig. 8")
    noises = sorted({float(r["noise_std"]) for r in result.results})
    rows = []
    for (n, beta), curve in F.robustness_curves(result).items():
        acc = dict(zip(curve[:, 0], curve[:, 1]))
        rows.append([f"{n:g}", f"{beta:g}"] + [pct(acc.get(s)) for s in noises])
    html += table(["n", "beta"] + [f"noise {s:g}" for s in noises], rows, [True] * (2 + len(noises)))
    if isinstance(result.selection, dict):
        html += "<h3>Selected transformation</h3>" + _selection(result.selection)
    return html + "<h3>Settings</h3>" + kv_table(result.to_json(), skip=("results", "selection"))


def _selection(sel: dict) -> str:
    """The per-attribute (n, beta) choice: accuracy with it and with the identity, and the choices."""
    html = kv_table(sel, skip=("n", "beta", "chosen", "candidates"))
    rows = [(split, pct(part.get("accuracy_identity")), pct(part.get("accuracy_selected")))
            for split, part in sel.items() if isinstance(part, dict) and "accuracy_selected" in part]
    if rows:
        html += table(["split", "identity (n=1, beta=0)", "selected"], rows, [False, True, True])
    groups: dict[str, list[str]] = {}
    for c in sel.get("chosen", []):
        if isinstance(c, dict) and {"name", "n", "beta"} <= set(c):
            groups.setdefault(f"n={c['n']:g}, beta={c['beta']:g}", []).append(c["name"])
    if groups:
        html += table(["transformation", "attributes"], [(k, ", ".join(v)) for k, v in groups.items()])
    return html
