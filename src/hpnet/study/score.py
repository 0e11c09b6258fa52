"""A study's score: people's predictions against the measured changes, with intervals over people and items.

The unit scored is a *pair*: one shown attribute of one answered test item (attention checks and
learning items are not scored; excluded participants neither). Per network (blind label):

- the people's rank score: Spearman's rho between direction x size and the measured signed change
  over the network's pairs, all participants together; the formula's (its signed prediction) and
  the no-change baseline's (0 by definition: a constant has no rank information) on the same pairs;
- the direction accuracy: the share of pairs whose predicted direction is the measured one (a
  measured change under ``DIRECTION_TOLERANCE`` logit sd counts as "no change"; the formula's
  prediction under ``FORMULA_TOLERANCE`` of the evidence counts as "no change").

Intervals are percentile intervals of a bootstrap that resamples participants and items *jointly*:
each resample draws the participants with replacement and, within each network, its items with
replacement, and a pair counts (participant's count) x (item's count) times. The same resamples
give the paired difference between two networks (same participants). Computed exactly from the
resample weights (:func:`hpnet.core.stats.resampled_spearman`), without writing resamples out.

Participants who pass fewer than ``EXCLUDE_BELOW`` of their attention checks are excluded (the
rule is in the protocol and in the result).
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core.stats import ResampleRanks, resample_counts, resampled_spearman, seed_interval, spearman
from ..predictability.human import DIRECTION_TOLERANCE, FORMULA_TOLERANCE
from ..results import StudyScoreResult
from . import store
from .protocol import EXCLUDE_BELOW
from .session import Study

BLOCK = 1 << 18          # resample weights held at once (rows x pairs)


@dataclass
class Pairs:
    """The scored pairs, one entry per (answer, shown attribute)."""

    participant: np.ndarray     # participant index 0..P-1
    item: np.ndarray            # item index 0..I-1
    network: np.ndarray         # network label per pair
    person: np.ndarray          # direction x size
    formula: np.ndarray
    measured: np.ndarray
    condition: np.ndarray
    operation: np.ndarray

    def subset(self, mask: np.ndarray) -> "Pairs":
        return Pairs(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


def score_study(study: Study | str, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> StudyScoreResult:
    """The score of every answer in the study so far (see the module's docstring)."""
    study = Study(study) if not isinstance(study, Study) else study
    conn = study.connect()
    try:
        answers = store.answer_rows(conn)
        ratings = [dict(r) for r in conn.execute("SELECT * FROM ratings")]
        joined = conn.execute("SELECT COUNT(*), COUNT(consented), COUNT(finished) FROM participants").fetchone()
    finally:
        conn.close()
    checks, excluded = attention_checks(answers, study.items)
    scored = [a for a in answers if a["phase"] == "test" and not study.items[a["item"]]["is_check"]
              and a["participant"] not in excluded]
    pairs = make_pairs(scored, study.items)
    rng = np.random.default_rng(seed)
    labels = sorted(study.networks)
    cp, ci = joint_counts(pairs, labels, n_boot, rng)
    per = {label: replicate_scores(pairs.subset(pairs.network == label), cp, ci) for label in labels}
    networks = {}
    for label in labels:
        mask = pairs.network == label
        networks[label] = {"identity": study.networks[label]["identity"], "head": study.networks[label]["head"],
                           "items": int(len(set(pairs.item[mask].tolist()))), "pairs": int(mask.sum()),
                           **network_scores(pairs, mask, cp, ci, level, per[label]),
                           "by_condition": {c: network_scores(pairs, mask & (pairs.condition == c), cp, ci, level)
                                            for c in sorted(set(pairs.condition[mask].tolist()))},
                           "by_operation": {o: network_scores(pairs, mask & (pairs.operation == o), cp, ci, level)
                                            for o in sorted(set(pairs.operation[mask].tolist()))},
                           "rating": rating_summary([r["value"] for r in ratings if r["network"] == label
                                                     and r["participant"] not in excluded]),
                           "points": {"person": pairs.person[mask].tolist(), "formula": pairs.formula[mask].tolist(),
                                      "measured": pairs.measured[mask].tolist()}}
    return StudyScoreResult(
        participants=int(joined[0]), consented=int(joined[1]), finished=int(joined[2]),
        included=len({a["participant"] for a in answers} - set(excluded)),
        excluded={str(p): why for p, why in excluded.items()},
        answers=len(answers), scored_answers=len(scored), pairs=int(pairs.person.size),
        exclusion={"rule": f"participants passing fewer than {EXCLUDE_BELOW:.0%} of their attention checks "
                           f"are excluded", **checks},
        networks=networks, paired=paired_differences(pairs, labels, per, level),
        learning_curve=learning_curve(answers, study.items, excluded, level), n_boot=n_boot, seed=seed, level=level)


def attention_checks(answers: Sequence[dict], items: dict) -> tuple[dict, dict[int, str]]:
    """The checks' pass rate, and the excluded participants with the reason."""
    passed: dict[int, list[bool]] = {}
    for a in answers:
        if items[a["item"]]["is_check"]:
            passed.setdefault(a["participant"], []).append(all(d == 0 for d in a["direction"]))
    excluded = {p: f"passed {sum(v)} of {len(v)} attention checks" for p, v in passed.items()
                if sum(v) < EXCLUDE_BELOW * len(v)}
    every = [x for v in passed.values() for x in v]
    return {"checks_answered": len(every), "pass_rate": float(np.mean(every)) if every else math.nan}, excluded


def make_pairs(answers: Sequence[dict], items: dict) -> Pairs:
    """One pair per (answer, shown attribute) of ``answers``."""
    people = {p: i for i, p in enumerate(sorted({a["participant"] for a in answers}))}
    ids = {item: i for i, item in enumerate(sorted(items))}
    rows = [(people[a["participant"]], ids[a["item"]], items[a["item"]]["network"], d * s,
             items[a["item"]]["formula"][k], items[a["item"]]["measured"][k], a["condition"],
             items[a["item"]]["operation"])
            for a in answers for k, (d, s) in enumerate(zip(a["direction"], a["size"]))]
    columns = list(zip(*rows)) if rows else [()] * 8
    kinds = (int, int, object, float, float, float, object, object)
    return Pairs(*(np.array(col, dtype=kind) for col, kind in zip(columns, kinds)))


def joint_counts(pairs: Pairs, labels: Sequence[str], n_boot: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The resamples: participants' counts (n_boot, P) and items' counts (n_boot, I), the items
    resampled within each network (so every resample keeps each network's number of items)."""
    P = int(pairs.participant.max()) + 1 if pairs.participant.size else 0
    I = int(pairs.item.max()) + 1 if pairs.item.size else 0
    cp = resample_counts(rng, P, n_boot).astype(float) if P else np.zeros((n_boot, 0))
    ci = np.zeros((n_boot, I))
    for label in labels:
        own = np.unique(pairs.item[pairs.network == label])
        if own.size:
            ci[:, own] = resample_counts(rng, own.size, n_boot)
    return cp, ci


def network_scores(pairs: Pairs, mask: np.ndarray, cp: np.ndarray, ci: np.ndarray, level: float,
                   replicates: tuple[dict, dict] | None = None) -> dict:
    """``{"person", "formula", "no_change"}``, each the rank score and direction accuracy with intervals
    (from ``replicates``, :func:`replicate_scores` of these pairs, when already computed)."""
    sub = pairs.subset(mask)
    rho, accuracy = replicates if replicates is not None else replicate_scores(sub, cp, ci)
    points = point_scores(sub)
    out = {name: {"score": points[name]["score"], **_interval(rho[name], level, "ci"),
                  "direction_accuracy": points[name]["direction_accuracy"],
                  **_interval(accuracy[name], level, "direction_ci")} for name in points}
    out["pairs"] = int(sub.person.size)
    return out


def point_scores(sub: Pairs) -> dict:
    """Each predictor's rank score and direction accuracy on all of ``sub``'s pairs."""
    measured = direction_of(sub.measured, DIRECTION_TOLERANCE, strict=True)
    values = {"person": sub.person, "formula": sub.formula, "no_change": np.zeros_like(sub.measured)}
    directions = {"person": np.sign(sub.person), "formula": direction_of(sub.formula, FORMULA_TOLERANCE),
                  "no_change": np.zeros_like(sub.measured)}
    return {name: {"score": _point_spearman(values[name], sub.measured),
                   "direction_accuracy": float(np.mean(directions[name] == measured)) if sub.person.size else math.nan}
            for name in values}


def replicate_scores(sub: Pairs, cp: np.ndarray, ci: np.ndarray) -> tuple[dict, dict]:
    """Per resample: each predictor's Spearman rho and direction accuracy on the pairs ``sub``."""
    n_boot = cp.shape[0]
    empty = {k: np.full(n_boot, np.nan) for k in ("person", "formula", "no_change")}
    if sub.person.size < 3:
        return empty, dict(empty)
    cells, owner = np.unique(np.stack([sub.participant, sub.item], 1), axis=0, return_inverse=True)
    owner = owner.ravel()
    truth = ResampleRanks(sub.measured, owner)
    sides = {"person": ResampleRanks(sub.person, owner), "formula": ResampleRanks(sub.formula, owner)}
    measured = direction_of(sub.measured, DIRECTION_TOLERANCE, strict=True)
    right = {"person": np.sign(sub.person) == measured,
             "formula": direction_of(sub.formula, FORMULA_TOLERANCE) == measured, "no_change": measured == 0}
    per_cell = {k: np.bincount(owner, v.astype(float), len(cells)) for k, v in right.items()}
    size = np.bincount(owner, minlength=len(cells)).astype(float)
    rho = {k: [] for k in ("person", "formula")}
    rows = max(1, BLOCK // max(sub.person.size, 1))
    accuracy = {k: [] for k in right}
    for start in range(0, n_boot, rows):
        block = slice(start, min(n_boot, start + rows))
        counts = cp[block][:, cells[:, 0]] * ci[block][:, cells[:, 1]]        # (rows, cells)
        for name, r in resampled_spearman(sides, truth, counts).items():
            rho[name].append(r)
        with np.errstate(invalid="ignore", divide="ignore"):
            total = counts @ size
            for name in right:
                accuracy[name].append(np.where(total > 0, counts @ per_cell[name] / total, np.nan))
    rho = {k: np.concatenate(v) for k, v in rho.items()}
    rho["no_change"] = np.zeros(n_boot)
    return rho, {k: np.concatenate(v) for k, v in accuracy.items()}


def direction_of(values: np.ndarray, tolerance: float, strict: bool = False) -> np.ndarray:
    small = np.abs(values) < tolerance if strict else np.abs(values) <= tolerance
    return np.where(small, 0, np.sign(values))


def paired_differences(pairs: Pairs, labels: Sequence[str], per: dict[str, tuple[dict, dict]], level: float) -> list:
    """For each two networks: the people's rank score and direction accuracy of the first less the
    second's, with intervals from the same resamples (the same participants)."""
    points = {label: point_scores(pairs.subset(pairs.network == label))["person"] for label in labels}
    out = []
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            out.append({"a": a, "b": b,
                        "score_difference": points[a]["score"] - points[b]["score"],
                        **_interval(per[a][0]["person"] - per[b][0]["person"], level, "ci"),
                        "direction_accuracy_difference":
                            points[a]["direction_accuracy"] - points[b]["direction_accuracy"],
                        **_interval(per[a][1]["person"] - per[b][1]["person"], level, "direction_ci")})
    return out


def learning_curve(answers: Sequence[dict], items: dict, excluded: dict, level: float) -> list[dict]:
    """The people's direction accuracy at each position of the order (learning items first; checks
    left out), with a t interval over the participants who answered there."""
    by_position: dict[int, list[float]] = {}
    for a in answers:
        item = items[a["item"]]
        if item["is_check"] or a["participant"] in excluded:
            continue
        measured = direction_of(np.array(item["measured"]), DIRECTION_TOLERANCE, strict=True)
        by_position.setdefault(a["ordinal"], []).append(float(np.mean(np.sign(a["direction"]) == measured)))
    out = []
    for position in sorted(by_position):
        phase = next(items[a["item"]]["phase"] for a in answers if a["ordinal"] == position)
        out.append({"position": position + 1, "phase": phase, **_mean_interval(by_position[position])})
    return out


def rating_summary(values: Sequence[int]) -> dict:
    return _mean_interval([float(v) for v in values])


def _mean_interval(values: Sequence[float]) -> dict:
    interval = seed_interval(list(values))
    return {"mean": interval["mean"], "ci_low": interval["ci_low"], "ci_high": interval["ci_high"], "n": len(values)}


def _point_spearman(predicted: np.ndarray, measured: np.ndarray) -> float:
    if predicted.size < 3 or np.ptp(measured) == 0:
        return math.nan
    return 0.0 if np.ptp(predicted) == 0 else float(spearman(predicted, measured))


def _interval(replicates: np.ndarray, level: float, prefix: str) -> dict:
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return {f"{prefix}_low": math.nan, f"{prefix}_high": math.nan}
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return {f"{prefix}_low": float(low), f"{prefix}_high": float(high)}


CSV_COLUMNS = ("participant", "condition", "phase", "position", "item", "network", "identity", "operation",
               "check", "attribute", "direction", "size", "prediction", "confidence", "measured", "formula",
               "seconds", "time")


def answers_csv(study: Study) -> str:
    """One row per (answer, shown attribute), with the item's network (label and identity), the
    measured and the formula's change: reads into pandas or R as it is."""
    conn = study.connect()
    try:
        answers = store.answer_rows(conn)
    finally:
        conn.close()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for a in answers:
        item = study.items[a["item"]]
        for k, attribute in enumerate(item["attributes"]):
            d, s = a["direction"][k], a["size"][k]
            writer.writerow([a["participant"], a["condition"], a["phase"], a["ordinal"] + 1, a["item"],
                             item["network"], study.networks[item["network"]]["identity"], item["operation"],
                             item["is_check"], attribute, d, s, d * s, a["confidence"], item["measured"][k],
                             item["formula"][k], "" if a["seconds"] is None else a["seconds"], a["time"]])
    return buffer.getvalue()
