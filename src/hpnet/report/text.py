"""Results as text: the tables the command line prints and the Markdown files beside the figures."""
from __future__ import annotations

from ..predictability.localisation import METHODS
from ..results import DissectResult, EvaluationResult, PredictabilityResult, StudyScoreResult, TrialScoreResult


def pct(v) -> str:
    """A fraction as a percentage with two decimals; "-" for None."""
    return "-" if v is None else f"{100 * float(v):.2f}%"


def score_text(s: dict | None) -> str:
    """A score with its interval: "0.845 [0.83, 0.86]"; "-" when there is none."""
    if not s or s.get("score") is None:
        return "-"
    low, high = s.get("ci_low"), s.get("ci_high")
    ci = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
    return f"{s['score']:.3f}{ci}"


def interval_text(m: dict | None, percent: bool = False) -> str:
    """"0.955 [0.949, 0.960]" (or in percent); "-" when the metric does not apply."""
    if not m or m.get("mean") is None:
        return "-"
    f = (lambda v: f"{100 * v:.2f}") if percent else (lambda v: f"{v:.3f}")
    if m.get("n", 0) < 2:
        return f(m["mean"])
    return f"{f(m['mean'])} [{f(m['ci_low'])}, {f(m['ci_high'])}]"


def format_table(result: EvaluationResult) -> str:
    """The per-attribute accuracy table of an evaluation."""
    rows = result.per_attribute
    width = max(len("attribute"), *(len(r["name"]) for r in rows))
    lines = [f"{'attribute':<{width}}  accuracy  majority  positives",
             f"{'-' * width}  --------  --------  ---------"]
    for r in rows:
        lines.append(f"{r['name']:<{width}}  {100 * r['accuracy']:7.2f}%  "
                     f"{100 * r['majority_baseline']:7.2f}%  {r['positives']:9d}")
    lines.append(f"{'mean':<{width}}  {100 * result.mean_accuracy:7.2f}%  "
                 f"{100 * result.mean_majority_baseline:7.2f}%")
    return "\n".join(lines)


def format_summary(result: PredictabilityResult) -> str:
    """The headline numbers of a predictability result (what `hpnet predictability` prints)."""
    acc = result.accuracy or {}
    ops = list(result.operations)
    width = max([len("network")] + [len(n) for n in result.networks]) + 2
    lines = [f"{'network':<{width}}{'accuracy':>10}  " + "".join(f"{op + ' [95% CI]':<26}" for op in ops)]
    for name in result.networks:
        scores = [(result.operations[op] or {}).get(name) for op in ops]
        lines.append(f"{name:<{width}}{pct((acc.get(name) or {}).get('mean_accuracy')):>10}  "
                     + "".join(f"{score_text(s) if s else '-':<26}" for s in scores))
    for name, loc in (result.localisation or {}).items():
        if isinstance(loc, dict) and "chance" in loc:
            methods = [m for m in METHODS + ("chance",) if loc.get(m)]
            shares = ", ".join(f"{m} {score_text(loc.get(m))}" for m in methods)
            lines.append(f"localisation of {name} (energy share inside the evidence region): {shares}")
    lines.append("regression calibration: " + ", ".join(f"{b} {v:.3f}" for b, v in result.regression.items()
                                                       if v is not None))
    return "\n".join(lines)


def table4_markdown(table: list[dict]) -> str:
    """Table 4 as a Markdown table: attribute, then its top correlated attributes with r."""
    lines = ["| attribute | most correlated attributes (Pearson r of the Fig. 5 rows) |", "| --- | --- |"]
    for row in table:
        others = ", ".join(f"{t['name']} ({t['correlation']:.2f})" for t in row["top"])
        lines.append(f"| {row['attribute']} | {others} |")
    return "\n".join(lines) + "\n"


HITL_ROWS = (("person", "person"), ("formula", "formula"), ("no_change", "no change"))


def format_hitl(result: TrialScoreResult) -> str:
    """The people's score (``hpnet hitl-score``): rank score and direction agreement of the person,
    the formula and the no-change baseline on the same trials, overall and per network."""
    result = result.to_json()
    lines = [f"{result['trials']} trials, {result['pairs']} predictions (Spearman rho of predicted vs measured "
             f"logit change, {100 * result['level']:g}% bootstrap over trials; direction: share of right directions)",
             f"{'':<10} {'rank score':<24} direction"]
    for key, label in HITL_ROWS:
        s = result[key]
        agreement = s.get("direction_agreement")
        lines.append(f"{label:<10} {score_text(s):<24} {pct(agreement)}")
    for network, part in result.get("by_network", {}).items():
        scores = ", ".join(f"{label} {score_text(part[key])}" for key, label in HITL_ROWS)
        lines.append(f"  {network} ({part['trials']} trials): {scores}")
    return "\n".join(lines)


def accuracy_text(s: dict | None) -> str:
    """A direction accuracy with its interval: "71.2% [64.0, 78.1]"."""
    if not s or s.get("direction_accuracy") is None:
        return "-"
    low, high = s.get("direction_ci_low"), s.get("direction_ci_high")
    ci = f" [{100 * low:.1f}, {100 * high:.1f}]" if low is not None and high is not None else ""
    return f"{100 * s['direction_accuracy']:.1f}%{ci}"


def format_study(result: StudyScoreResult) -> str:
    """A study's score (``hpnet study score``): per network the people's, the formula's and the
    no-change baseline's rank score and direction accuracy, the paired differences, the exclusions."""
    r = result.to_json()
    lines = [f"{r['participants']} participants ({r['consented']} consented, {r['finished']} finished, "
             f"{r['included']} scored, {len(r['excluded'])} excluded: {r['exclusion']['rule']}); "
             f"{r['scored_answers']} test answers, {r['pairs']} predictions scored",
             f"intervals: {100 * r['level']:g}% bootstrap over participants and items jointly ({r['n_boot']} resamples)",
             f"{'network':<28} {'who':<10} {'rank score':<24} direction right"]
    for label, net in r["networks"].items():
        name = f"{label} = {net['identity']}"
        for who in ("person", "formula", "no_change"):
            lines.append(f"{name:<28} {who.replace('_', ' '):<10} {score_text(net[who]):<24} {accuracy_text(net[who])}")
            name = ""
        rating = net.get("rating") or {}
        if rating.get("n"):
            lines.append(f"{'':<28} felt predictable (1-7): {rating['mean']:.2f} over {rating['n']} people")
    for pair in r["paired"]:
        diff = {"score": pair["score_difference"], "ci_low": pair["ci_low"], "ci_high": pair["ci_high"]}
        lines.append(f"people on {pair['a']} minus {pair['b']}: rank score {score_text(diff)}")
    return "\n".join(lines)


def format_dissect(result: DissectResult) -> str:
    """Each part's channels (IoU), how the roles match the attributes' evidence, and the Fig. 4 pair."""
    named = sum(c["part"] != "none" for c in result.channels)
    lines = [f"{named} of {len(result.channels)} channels have a face part (IoU >= "
             f"{result.settings.get('threshold')}, {result.images} {result.split or ''} images; parts from "
             f"{result.part_source}):"]
    for part, chans in result.roles().items():
        shown = ", ".join(f"{c} ({result.channels[c]['iou']:.2f})" for c in chans)
        lines.append(f"{part:>10}  {shown}")
    c = result.consistency
    if c.get("score") is not None:
        lines.append(f"evidence on channels of the attribute's parts: {100 * c['score']:.1f}% "
                     f"(random roles {100 * c['chance']:.1f}%, p = {c['p_value']:.3g}, {c['attributes']} attributes)")
    f = result.fig4
    if "skipped" in f:
        lines.append(f"Fig. 4: {f['skipped']}")
    else:
        for a in f["attributes"]:
            top = ", ".join(f"{e['channel']} ({e['part']})" for e in f["top"][a])
            lines.append(f"Fig. 4: top {f['k']} channels of {a}: {top}")
        shared = ", ".join(f"{e['channel']} ({e['part']})" for e in f["shared"]) or "none"
        lines.append(f"Fig. 4: shared: {shared}")
    return "\n".join(lines)
