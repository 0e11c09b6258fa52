"""Real people's predictions: the trial log of ``hpnet serve`` and its score.

A *trial* shows a person a perturbation of the model (channels switched off, a tone curve on the
masks); for each shown attribute the person commits a direction (-1 down, 0 no change, +1 up) and
a size (0 none, 1 small, 2 medium, 3 large) of the change of its logit, and a confidence; then the
change is measured. One trial is one JSON line of ``RUN/hitl/trials.jsonl`` (the network named as
``Run.network_name`` names it; the operation and its parameters as :mod:`hpnet.operations` writes
them, see :mod:`hpnet.hitl.trials`; lines of version 1 named the networks "attention"/"plain" and
held "perturbation": {"off", "n", "beta"}; they are read and scored the same):

    {"version": 2, "trial": "...", "time": "...", "network": "demo (attention)", "blind": false,
     "source": "random", "operation": "scale", "params": {"operation": "scale", "channels": [3],
     "alpha": 0.5}, "perturbation": (the same as "params"), "description": "...",
     "attributes": [shown names], "person": [direction x size per shown attribute],
     "direction": [...], "size": [...], "confidence": 0.7,
     "formula": [signed formula prediction], "measured": [signed mean logit change / logit std],
     "measured_abs": [...], "accuracy_change": [...], "seconds": 12.3}

The score is the one of ``hpnet predictability``: Spearman's rank correlation between predicted and
measured change over the (trial, attribute) pairs, here with a percentile bootstrap over *trials*
(a trial's attributes are resampled together; every predictor is scored on the same resamples, each
from the resample's counts without sorting again: :func:`hpnet.core.stats.cluster_bootstrap_spearman`).
It is given for the person, for the formula (the
human-side predictor the page shows) and for a "no change" baseline on the same trials; a constant
prediction carries no rank information, so the baseline's rank score is 0 by the definition
("0 = no information"). The direction agreement (share of pairs whose direction is right, a
measured change under ``DIRECTION_TOLERANCE`` standard deviations counting as "no change") is a
second number on which the baseline is a real competitor.

``hpnet hitl-score`` writes the score as a :class:`~hpnet.results.TrialScoreResult`
(``RUN/hitl/score.json``, from :func:`score_trial_log`) with the size, time and SHA-256 digest of the
log it scored, so that a reader can tell (:func:`score_is_current`) whether the log has changed since.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..core.stats import cluster_bootstrap_spearman, spearman
from ..errors import HPNetError
from ..results import TrialScoreResult

LOG_VERSION = 2
HITL_DIR = "hitl"             # in the run folder: trials.jsonl, score.json (TrialScoreResult), exports/
LOG_FILE = "trials.jsonl"
SIZE_LEVELS = ("none", "small", "medium", "large")
DIRECTION_TOLERANCE = 0.1     # |measured change| below this many logit std is "no change"
FORMULA_TOLERANCE = 0.01      # |formula prediction| below this share of the evidence is "no change"
PREDICTORS = ("person", "formula", "no_change")
MAX_VALUE = 1e6               # |a logged number| above this is damage (changes are in logit std units)


def append_trial(path: str | Path, trial: dict) -> None:
    """Append ``trial`` as one JSON line, flushed and fsynced before returning.

    A line left half-written by a killed process is closed with a newline first, so that it stays
    one corrupt line (skipped on reading) instead of spoiling the trial written after it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(trial, allow_nan=False, separators=(",", ":")) + "\n"
    with open(path, "a+b") as f:
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
        f.write(line.encode())
        f.flush()
        os.fsync(f.fileno())


def check_log_writable(path: str | Path) -> None:
    """One line naming the log when it cannot be appended to (its folder is a file, read-only, ...):
    a server checks this before anyone predicts, so no committed trial is lost to it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab"):
            pass
    except OSError as e:
        raise HPNetError(f"{path}: the trial log cannot be written ({e.strerror or e})") from None


def read_trials(path: str | Path) -> tuple[list[dict], list[str]]:
    """The trials of a log and a warning per line that was skipped (not a trial: corrupt or cut).

    A missing log has no trials. Never raises for the log's content, so a page never fails on it.
    """
    path = Path(path)
    if not path.is_file():
        return [], []
    with open(path, "rb") as f:
        return _parse_trials(f.read(), path)


def _parse_trials(raw: bytes, path: Path) -> tuple[list[dict], list[str]]:
    trials, warnings = [], []
    lines = raw.split(b"\n")
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            trial = json.loads(raw)
            _check_trial(trial)
        except (ValueError, RecursionError, HPNetError) as e:
            last = all(not rest.strip() for rest in lines[number:])
            warnings.append(f"{path}: line {number} skipped ({'the last line, cut short' if last else 'not a trial'}: "
                            f"{str(e)[:80]})")
            continue
        trials.append(trial)
    return trials, warnings


def _check_trial(trial) -> None:
    if not isinstance(trial, dict):
        raise HPNetError("not a JSON object")
    shown = trial.get("attributes")
    if not isinstance(shown, list) or not shown:
        raise HPNetError("no \"attributes\"")
    for key in ("person", "formula", "measured"):
        values = trial.get(key)
        if not isinstance(values, list) or len(values) != len(shown) or not all(map(_loggable, values)):
            raise HPNetError(f"\"{key}\" must hold one number in [-{MAX_VALUE:g}, {MAX_VALUE:g}] per shown attribute")
    if not isinstance(trial.get("network"), str):
        raise HPNetError("no \"network\"")


def _loggable(v) -> bool:
    """A number a logged prediction or change can be: finite and at most MAX_VALUE in size (no
    400-digit integers, no 1e308: they overflow the statistics and the plots)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return -MAX_VALUE <= v <= MAX_VALUE                 # False for NaN; no float() of a huge integer


def score_trials(trials: Sequence[dict], n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """The person's, the formula's and the no-change baseline's score on the same trials.

    Returns ``{"trials", "pairs", "person", "formula", "no_change": {"score", "ci_low", "ci_high",
    "n", "direction_agreement"}, "by_network": {network: {the same for its trials}}}``.
    """
    out = _score(trials, n_boot, seed, level)
    networks = sorted({t["network"] for t in trials})
    out["by_network"] = {name: _score([t for t in trials if t["network"] == name], n_boot, seed, level)
                         for name in networks}
    return out


def _score(trials: Sequence[dict], n_boot: int, seed: int, level: float) -> dict:
    measured = [np.asarray(t["measured"], dtype=float) for t in trials]
    predictions = {"person": [np.asarray(t["person"], dtype=float) for t in trials],
                   "formula": [np.asarray(t["formula"], dtype=float) for t in trials],
                   "no_change": [np.zeros(len(t["measured"])) for t in trials]}
    tolerance = {"person": 0.0, "formula": FORMULA_TOLERANCE, "no_change": 0.0}
    scores = trial_bootstraps(predictions, measured, n_boot, seed, level)
    out = {"trials": len(trials), "pairs": int(sum(m.size for m in measured))}
    for name, predicted in predictions.items():
        out[name] = {**scores[name], "direction_agreement": direction_agreement(predicted, measured, tolerance[name])}
    return out


def trial_bootstrap(predicted: Sequence[np.ndarray], measured: Sequence[np.ndarray], n_boot: int = 1000,
                    seed: int = 0, level: float = 0.95) -> dict:
    """Spearman's rho over all (trial, attribute) pairs with a percentile bootstrap over trials.

    A constant prediction (every pair the same) has no rank information: its score is 0 with the
    interval [0, 0]. NaN with fewer than 3 pairs or when the measured side is constant.
    """
    return trial_bootstraps({"predicted": predicted}, measured, n_boot, seed, level)["predicted"]


def trial_bootstraps(predictions: dict[str, Sequence[np.ndarray]], measured: Sequence[np.ndarray],
                     n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, dict]:
    """:func:`trial_bootstrap` of each predictor on the same trials, every one on the same resamples
    (a resample whose prediction is constant scores 0; non-finite resample scores are left out)."""
    m = np.concatenate(list(measured)) if len(measured) else np.zeros(0)
    owner = np.repeat(np.arange(len(measured)), [len(x) for x in measured])
    n = int(m.size)
    out, ranked = {}, {}
    for name, predicted in predictions.items():
        p = np.concatenate(list(predicted)) if len(predicted) else np.zeros(0)
        if n < 3 or np.ptp(m) == 0:
            out[name] = {"score": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": n}
        elif np.ptp(p) == 0:
            out[name] = {"score": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n": n}
        else:
            ranked[name] = p
    boots = cluster_bootstrap_spearman(ranked, m, owner, n_boot, seed) if ranked else {}
    tail = 50.0 * (1.0 - level)
    for name, p in ranked.items():
        kept = boots[name][np.isfinite(boots[name])]
        low, high = np.percentile(kept, [tail, 100.0 - tail]) if kept.size else (math.nan, math.nan)
        out[name] = {"score": float(spearman(p, m)), "ci_low": float(low), "ci_high": float(high), "n": n}
    return {name: out[name] for name in predictions}


def direction_agreement(predicted: Sequence[np.ndarray], measured: Sequence[np.ndarray],
                        tolerance: float = 0.0) -> float:
    """Share of pairs whose predicted direction (|p| <= ``tolerance`` is "no change") is the measured
    one (|m| < DIRECTION_TOLERANCE logit std is "no change"); NaN without pairs."""
    if not len(measured):
        return math.nan
    p, m = np.concatenate(list(predicted)), np.concatenate(list(measured))
    if not m.size:
        return math.nan
    p_dir = np.where(np.abs(p) <= tolerance, 0, np.sign(p))
    m_dir = np.where(np.abs(m) < DIRECTION_TOLERANCE, 0, np.sign(m))
    return float((p_dir == m_dir).mean())


def score_log(path: str | Path, n_boot: int = 1000, seed: int = 0) -> dict:
    """:func:`score_trials` of the log at ``path``, with the skipped lines as ``warnings``, as a plain
    dict (what the page's ``/api/score`` serves; ``hpnet hitl-score`` writes :func:`score_trial_log`)."""
    path = Path(path)
    return score_log_bytes(path.read_bytes() if path.is_file() else b"", path, n_boot, seed)


def score_log_bytes(raw: bytes, path: str | Path, n_boot: int = 1000, seed: int = 0) -> dict:
    """:func:`score_log` of ``raw``, the bytes read from the log at ``path`` (named in the warnings):
    a snapshot taken while no trial is being appended is scored without holding anything."""
    trials, warnings = _parse_trials(raw, Path(path))
    return {**score_trials(trials, n_boot, seed), "warnings": warnings, "log": str(path)}


def score_trial_log(path: str | Path, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> TrialScoreResult:
    """The score of the log at ``path`` (missing: no trials) as a result, stamped with the log it read.

    The log is read once: the trials scored and the stamp (size, digest) are of the same bytes, so
    a trial appended while scoring makes the result stale instead of silently left out.
    """
    path = Path(path)
    modified = path.stat().st_mtime if path.is_file() else None
    raw = path.read_bytes() if path.is_file() else b""
    trials, warnings = _parse_trials(raw, path)
    scores = score_trials(trials, n_boot, seed, level)
    stamp = {"file": path.name, "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
             "modified": None if modified is None else
             datetime.fromtimestamp(modified, timezone.utc).isoformat(timespec="seconds")}
    return TrialScoreResult(trials=scores["trials"], pairs=scores["pairs"], person=scores["person"],
                            formula=scores["formula"], no_change=scores["no_change"], log=stamp,
                            by_network=scores["by_network"], warnings=warnings, n_boot=n_boot, seed=seed,
                            level=level)


def score_is_current(result: TrialScoreResult, path: str | Path) -> bool:
    """Whether ``result`` scored the log at ``path`` as it is now (same size and SHA-256 digest; a
    missing log counts as an empty one). The modification time is not compared: a copied or restored
    log keeps its content and its score."""
    path = Path(path)
    size = path.stat().st_size if path.is_file() else 0
    if size != result.log.get("bytes"):
        return False
    raw = path.read_bytes() if path.is_file() else b""
    return hashlib.sha256(raw).hexdigest() == result.log.get("sha256")
