"""One self-contained HTML page for a run: every figure and table the commands have written.

The page reads only the run folder's JSON and PNG files (run.json, eval_*.json, analysis.json and
figures/, pruning.json, robustness.json) and never imports the trainer. Figures are embedded as
base64 PNG and the CSS is inline, so the file can be mailed or archived alone. A section whose file
is missing says which command makes it. The regression example (paper Eq. 3-7) is computed on the
fly. Other modules add sections through ``extra_sections``: (title, HTML) pairs.
"""
from __future__ import annotations

import base64
import functools
from collections.abc import Sequence
from html import escape
from pathlib import Path

import numpy as np

from ..io import atomic_write_text, read_json
from . import figures as F

SECTIONS = {
    "settings": "Settings and data",
    "training": "Training",
    "accuracy": "Accuracy per attribute",
    "fig4": "Fig. 4: attention masks of the top channels",
    "fig5": "Fig. 5: mean attention mask per attribute and channel",
    "fig6": "Fig. 6: channel correlation",
    "table4": "Table 4: attributes with correlated attention",
    "fig7": "Fig. 7: semantic channel pruning",
    "fig8": "Fig. 8: robustness with the mask transformation",
    "regression": "Regression example (Eq. 3-7)",
}
PRUNE_FRACTIONS = (0.0, 0.25, 0.5, 0.75)

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1150px; margin: 2em auto; padding: 0 1.2em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2.2em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
nav ol { columns: 2; font-size: 0.95em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td:first-child { white-space: nowrap; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.good td.diff { color: #17693a; } tr.bad td.diff { color: #a31515; }
img { max-width: 100%; height: auto; display: block; margin: 0.8em 0; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 0.9em; }
.muted { color: #666; font-size: 0.9em; }
code { background: #f4f4f4; padding: 0 0.25em; }
"""


# ----------------------------------------------------------------------------------------------
# small HTML pieces


def _table(headers: Sequence[str], rows: Sequence[Sequence], numeric: Sequence[bool] | None = None,
           row_classes: Sequence[str] | None = None) -> str:
    numeric = numeric or [False] * len(headers)
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        cells = "".join(_cell(v, numeric[j] if j < len(numeric) else False) for j, v in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cell(value, numeric: bool) -> str:
    if isinstance(value, tuple):  # (text, css class)
        return f'<td class="{value[1]}">{escape(str(value[0]))}</td>'
    return f'<td class="num">{escape(str(value))}</td>' if numeric else f"<td>{escape(str(value))}</td>"


def _img(b64: str, alt: str) -> str:
    return f'<img src="data:image/png;base64,{b64}" alt="{escape(alt)}">'


def _fig(fig, alt: str) -> str:
    return _img(F.png_base64(fig), alt)


def _png_file(path: Path, alt: str) -> str:
    return _img(base64.b64encode(path.read_bytes()).decode("ascii"), alt)


def _note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def _missing(file: str, command: str) -> str:
    return _note(f"<code>{escape(file)}</code> is not in the run folder yet: run "
                 f"<code>{escape(command)}</code> to make it.")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * float(x):.2f}%"


def _scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _value(v) -> str | None:
    """A short text for a setting: numbers, strings, short lists, flat dicts; None to leave it out."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)) and all(_scalar(x) for x in v):
        shown = ", ".join(_value(x) for x in v[:12])
        return shown if len(v) <= 12 else f"{len(v)} items: {shown}, ..."
    if isinstance(v, dict) and all(_scalar(x) for x in v.values()):
        return ", ".join(f"{k}: {_value(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple, dict)):
        return None
    return "-" if v is None else str(v)


def _kv_table(items: dict, skip: Sequence[str] = ()) -> str:
    """The settings of a result file: scalars, short lists and flat dicts (nested data left out)."""
    rows = [(k, _value(v)) for k, v in items.items() if k not in skip]
    rows = [r for r in rows if r[1] is not None]
    return _table(["setting", "value"], rows) if rows else ""


def _read(path: Path) -> dict | None:
    return read_json(path) if path.is_file() else None


# ----------------------------------------------------------------------------------------------
# sections


def settings_section(record: dict) -> str:
    data = record.get("data") or {}
    model = record.get("model") or {}
    train = record.get("train") or {}
    attrs = model.get("attribute_names") or data.get("attributes") or []
    rows = [
        ("dataset", data.get("dataset", "-")), ("root", data.get("root") or "(built in)"),
        ("image size", data.get("image_size", "-")), ("max images", _value(data.get("max_images"))),
        ("data seed / valid fraction", f"{data.get('seed', '-')} / {data.get('valid_fraction', '-')}"),
        ("training / validation images", f"{record.get('train_images', '-')} / {record.get('valid_images', '-')}"),
        ("attributes", f"{len(attrs)}: " + ", ".join(attrs)),
        ("backbone", model.get("backbone", "-")), ("widths", _value(model.get("widths"))),
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
    return _table(["setting", "value"], rows)


def training_section(record: dict) -> str:
    history = record.get("history") or []
    if not history:
        return _note("No finished epoch yet: run <code>hpnet train</code> (or <code>--resume</code>).")
    last = history[-1]
    speed = f"{last['images_per_s']:.0f} images/s, {last['seconds']:.1f} s per epoch" \
        if "images_per_s" in last and "seconds" in last else ""
    return _fig(F.fig_training(history), "training curve") + (f'<p class="muted">last epoch: {speed}</p>'
                                                               if speed else "")


def accuracy_section(run_dir: Path) -> str:
    files = sorted(run_dir.glob("eval_*.json"))
    if not files:
        return _missing("eval_<split>.json", f"hpnet eval {run_dir}")
    return "".join(_accuracy_table(read_json(f), f.name) for f in files)


def _accuracy_table(result: dict, name: str) -> str:
    rows, classes = [], []
    for r in result.get("per_attribute", []):
        diff = r["accuracy"] - r["majority_baseline"]
        rows.append((r["name"], _pct(r["accuracy"]), _pct(r["majority_baseline"]),
                     (f"{100 * diff:+.2f}", "num diff"), r.get("positives", "-")))
        classes.append("good" if diff > 0 else "bad" if diff < 0 else "")
    rows.append(("mean", _pct(result.get("mean_accuracy")), _pct(result.get("mean_majority_baseline")),
                 (f"{100 * (result.get('mean_accuracy', 0) - result.get('mean_majority_baseline', 0)):+.2f}",
                  "num diff"), ""))
    classes.append("")
    head = (f"<h3>{escape(result.get('split', name))} split, {result.get('images', '?')} images "
            f"<span class=\"muted\">({escape(name)})</span></h3>")
    return head + _table(["attribute", "accuracy", "majority class", "difference (points)", "positives"],
                         rows, [False, True, True, True, True], classes)


def analysis_sections(run_dir: Path) -> dict[str, str]:
    analysis = _read(run_dir / "analysis.json")
    if analysis is None:
        hint = _missing("analysis.json", f"hpnet analyse {run_dir}")
        return {key: hint for key in ("fig4", "fig5", "fig6", "table4")}
    figs = run_dir / "figures"
    names = analysis["attribute_names"]
    out = {"fig4": _fig4(analysis, figs / "fig4_mask_maps.png", run_dir)}
    fig5 = figs / "fig5_mean_masks.png"
    out["fig5"] = (_png_file(fig5, "Fig. 5") if fig5.is_file()
                   else _fig(F.fig5_mean_mask_grid(analysis["mean_mask_grid"], names), "Fig. 5"))
    fig6 = figs / "fig6_channel_correlation.png"
    out["fig6"] = (_png_file(fig6, "Fig. 6") if fig6.is_file() else
                   _fig(F.fig6_channel_correlation(analysis["channel_correlation"], analysis["cluster_order"]),
                        "Fig. 6"))
    images = analysis.get("images", {})
    out["fig5"] += (f'<p class="muted">Mean over {images.get("mean_mask_grid", "?")} '
                    f'{escape(str(images.get("mean_mask_split", "")))} images and all positions; '
                    f'backbone {escape(str(analysis.get("backbone")))}.</p>')
    out["fig6"] += (f'<p class="muted">Pearson correlation of the feature channels over '
                    f'{images.get("channel_correlation", "?")} training images and all positions.</p>')
    out["table4"] = _table4(analysis["attribute_table"])
    return out


def _fig4(analysis: dict, png: Path, run_dir: Path) -> str:
    if not png.is_file():
        return _missing("figures/fig4_mask_maps.png", f"hpnet analyse {run_dir}")
    top = analysis.get("top_channels", {})
    rows = [(name, ", ".join(str(c) for c in top.get(name, []))) for name in analysis.get("fig4_attributes", [])]
    return _png_file(png, "Fig. 4") + _table(["attribute", "top channels (mean mask x |w_k|)"], rows)


def _table4(table: list[dict]) -> str:
    rows = [(row["attribute"], ", ".join(f"{t['name']} ({t['correlation']:.2f})" for t in row["top"]))
            for row in table]
    return ('<p class="muted">Pearson correlation between the attributes\' rows of Fig. 5.</p>'
            + _table(["attribute", "most correlated attributes (r)"], rows))


def pruning_section(run_dir: Path, baseline: float | None) -> str:
    result = _read(run_dir / "pruning.json")
    if result is None:
        return _missing("pruning.json", f"hpnet prune {run_dir}")
    html = _fig(F.fig7_pruning(result, baseline), "Fig. 7")
    tables = [("methods", "")]
    if result.get("reconstructed"):
        html += ('<p class="muted">Each pruned model\'s classifiers (w_k, b_k) are refitted by least '
                 'squares to the original model\'s logits on training images (no labels, extractor and '
                 'masks unchanged). The second table is the plain removal, classifiers unchanged.</p>')
        tables = [("methods", "classifiers reconstructed"),
                  ("methods_heads_unchanged", "classifiers unchanged (plain removal)")]
    for key, title in tables:
        html += (f"<h3>{title}</h3>" if title else "") + _pruning_table(result.get(key, {}), result.get("channels"))
    if isinstance(result.get("physical"), dict):
        html += "<h3>Physical pruning</h3>" + _before_after(result["physical"])
    return html + "<h3>Settings</h3>" + _kv_table(result, skip=("methods", "methods_heads_unchanged",
                                                                "physical", "filter_l1"))


def _pruning_table(methods: dict, channels: int | None) -> str:
    """Mean accuracy of each method at PRUNE_FRACTIONS of the channels pruned (interpolated)."""
    rows = []
    for method, curve in methods.items():
        curve = np.asarray(curve, dtype=float).reshape(len(curve), -1)
        if not len(curve):
            continue
        total = channels or curve[:, 0].max()
        rows.append([method] + [_pct(np.interp(f * total, curve[:, 0], curve[:, 1])) for f in PRUNE_FRACTIONS])
    return _table(["method"] + [f"{int(100 * f)}% pruned" for f in PRUNE_FRACTIONS], rows,
                  [False] + [True] * len(PRUNE_FRACTIONS))


def _before_after(physical: dict) -> str:
    """Rows "params", "macs", ... from keys ``<name>_before`` / ``<name>_after``, then the rest."""
    names = [k[:-7] for k in physical if k.endswith("_before") and f"{k[:-7]}_after" in physical]
    rows = [(n.replace("_", " "), _value(physical[f"{n}_before"]), _value(physical[f"{n}_after"])) for n in names]
    paired = {f"{n}_{t}" for n in names for t in ("before", "after")}
    html = _table(["", "before", "after"], rows, [False, True, True])
    return html + _kv_table({k: v for k, v in physical.items() if k not in paired})


def robustness_section(run_dir: Path, baseline: float | None) -> str:
    result = _read(run_dir / "robustness.json")
    if result is None:
        return _missing("robustness.json", f"hpnet robust {run_dir}")
    html = _fig(F.fig8_robustness(result, baseline), "Fig. 8")
    curves = F.robustness_curves(result)
    noises = sorted({float(r["noise_std"]) for r in result.get("results", [])})
    rows = []
    for (n, beta), curve in curves.items():
        acc = dict(zip(curve[:, 0], curve[:, 1]))
        rows.append([f"{n:g}", f"{beta:g}"] + [_pct(acc.get(s)) for s in noises])
    html += _table(["n", "beta"] + [f"noise {s:g}" for s in noises], rows, [True] * (2 + len(noises)))
    if isinstance(result.get("selection"), dict):
        html += "<h3>Selected transformation</h3>" + _selection(result["selection"])
    return html + "<h3>Settings</h3>" + _kv_table(result, skip=("results", "selection"))


def _selection(sel: dict) -> str:
    """The per-attribute (n, beta) choice: accuracy with it and with the identity, and the choices."""
    html = _kv_table(sel, skip=("n", "beta", "chosen", "candidates"))
    rows = [(split, _pct(part.get("accuracy_identity")), _pct(part.get("accuracy_selected")))
            for split, part in sel.items() if isinstance(part, dict) and "accuracy_selected" in part]
    if rows:
        html += _table(["split", "identity (n=1, beta=0)", "selected"], rows, [False, True, True])
    groups: dict[str, list[str]] = {}
    for c in sel.get("chosen", []):
        if isinstance(c, dict) and {"name", "n", "beta"} <= set(c):
            groups.setdefault(f"n={c['n']:g}, beta={c['beta']:g}", []).append(c["name"])
    if groups:
        html += _table(["transformation", "attributes"], [(k, ", ".join(v)) for k, v in groups.items()])
    return html


@functools.lru_cache(maxsize=1)
def regression_section() -> str:
    """The regression example's section; deterministic, so computed once per process."""
    from ..analysis.regression import regression_example

    ex = regression_example()
    rows = [(F.BASIS_TITLES.get(name, name), ex["n_coeffs"], f"{b['spread']:.3f}", f"{b['rmse_data']:.4f}",
             f"{b['rmse_target']:.4f}", b["term"], b["components_changed"]) for name, b in ex["bases"].items()]
    intro = (f'<p>Three models with {ex["n_coeffs"]} coefficients each, fitted by least squares to the same '
             f'{ex["n_points"]} noisy points (noise std {ex["noise_std"]}). Coefficient {ex["index"]} of each '
             f'is changed by {ex["delta"]:+g}. Spread: the mean fraction of a coefficient change that lands '
             f'on other basis components (from the normalised Gram matrix; 0 for an orthogonal basis).</p>')
    table = _table(["model", "coefficients", "spread", "RMSE to data", "RMSE to true curve",
                    "perturbed coefficient", "orthonormal components changed"], rows,
                   [False, True, True, True, True, False, True])
    return (intro + _fig(F.fig_regression(ex), "regression example") + table
            + _fig(F.fig_gram(ex), "Gram matrices"))


# ----------------------------------------------------------------------------------------------
# the page


def write_report(run_dir: str | Path, out: str | Path | None = None,
                 extra_sections: Sequence[tuple[str, str]] = ()) -> Path:
    """Write the run's report as one HTML file (default ``RUN/report.html``); returns its path.

    ``extra_sections``: (title, HTML body) pairs appended after the built-in sections; the
    body is inserted as given (trusted HTML from library code), the title is escaped.
    """
    run_dir = Path(run_dir)
    record = read_json(run_dir / "run.json")
    out = Path(out) if out else run_dir / "report.html"
    evals = [read_json(f) for f in sorted(run_dir.glob("eval_*.json"))]
    baseline = evals[0].get("mean_majority_baseline") if evals else None
    bodies = {"settings": settings_section(record), "training": training_section(record),
              "accuracy": accuracy_section(run_dir), **analysis_sections(run_dir),
              "fig7": pruning_section(run_dir, baseline), "fig8": robustness_section(run_dir, baseline),
              "regression": regression_section()}
    sections = [(key, SECTIONS[key], bodies[key]) for key in SECTIONS]
    sections += [(f"extra{i}", title, body) for i, (title, body) in enumerate(extra_sections)]
    atomic_write_text(_page(run_dir, record, sections), out)
    return out


def _page(run_dir: Path, record: dict, sections: list[tuple[str, str, str]]) -> str:
    title = f"hpnet report: {run_dir.resolve().name}"
    model = record.get("model") or {}
    data = record.get("data") or {}
    subtitle = (f"{escape(str(data.get('dataset', '?')))} data, {escape(str(model.get('backbone', '?')))} "
                f"backbone, {len(model.get('attribute_names') or [])} attributes; run folder "
                f"<code>{escape(str(run_dir))}</code>")
    nav = "".join(f'<li><a href="#{key}">{escape(t)}</a></li>' for key, t, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{escape(t)}</h2>{html}</section>' for key, t, html in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{escape(title)}</h1><p class=\"muted\">{subtitle}</p>"
            f"<nav><ol>{nav}</ol></nav>{body}</body></html>\n")
