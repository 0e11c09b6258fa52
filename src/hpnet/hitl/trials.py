"""Predict, then see: trials proposed to a person, committed predictions, the log and its score.

A trial is started with a perturbation (random from the family the predictability score uses, or
the person's own) on one network (or, blind, on one of the run's networks drawn at random); the
measurement is computed only when the person commits a prediction, and the committed trial is
appended to the log (:func:`hpnet.predictability.human.append_trial`: flushed and fsynced) before
the answer goes back. Trials started but not committed live only in memory.
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path

from ..errors import HPNetError
from ..predictability.human import LOG_VERSION, SIZE_LEVELS, append_trial, score_log
from .workbench import Perturbation, Workbench, describe_off, short

TRIAL_ATTRIBUTES = 4      # attributes a person predicts per trial
MAX_PENDING = 256         # trials started and not committed, oldest forgotten first
MODES = ("random", "own")


class TrialDesk:
    """Trials of one workbench, logged to ``log`` (``RUN/hitl/trials.jsonl``)."""

    def __init__(self, bench: Workbench, log: str | Path, attributes: int = TRIAL_ATTRIBUTES, n_boot: int = 1000):
        self.bench, self.log, self.attributes, self.n_boot = bench, Path(log), attributes, n_boot
        self.pending: OrderedDict[str, dict] = OrderedDict()
        self.lock = threading.Lock()

    def start(self, request) -> dict:
        """A new trial from ``{"mode": "random" | "own", "network": name | "blind", "perturbation"}``."""
        if not isinstance(request, dict):
            raise HPNetError("a trial request must be a JSON object with \"mode\" and \"network\"")
        unknown = sorted(set(request) - {"mode", "network", "perturbation"})
        if unknown:
            raise HPNetError(f"unknown key {unknown[0]!r} in the trial request (known: mode, network, perturbation)")
        bench = self.bench
        mode, network = request.get("mode", "random"), request.get("network", bench.main.name)
        if not isinstance(mode, str) or mode not in MODES:
            raise HPNetError(f"mode must be one of {', '.join(MODES)}, got {short(mode)}")
        blind = network == "blind"
        if blind:
            network = list(bench.networks)[int(bench.rng.integers(len(bench.networks)))]
        elif not isinstance(network, str) or network not in bench.networks:
            raise HPNetError(f"network must be one of {', '.join([*bench.networks, 'blind'])}, got {short(network)}")
        if mode == "own":
            spec = request.get("perturbation")
            if not isinstance(spec, dict):
                raise HPNetError("mode \"own\" needs a \"perturbation\"")
            p = bench.perturbation({**spec, "network": network})
            if blind and (p.n, p.beta) != bench.networks[network].own_tone:
                raise HPNetError("a blind trial can only switch channels off (the plain CNN has no masks to transform)")
            description = _describe(p, bench)
        else:
            p, description = bench.random_perturbation(network, pruning_only=blind)
        K = len(bench.attributes)
        shown = sorted(bench.rng.choice(K, size=min(self.attributes, K), replace=False).tolist())
        trial = {"trial": secrets.token_hex(8), "network": network, "blind": blind, "source": mode,
                 "perturbation": p, "description": description,
                 "attributes": [bench.attributes[k] for k in shown], "started": time.monotonic()}
        with self.lock:
            self.pending[trial["trial"]] = trial
            while len(self.pending) > MAX_PENDING:
                self.pending.popitem(last=False)
        shown_p = p.to_json()
        if blind:
            shown_p["network"] = "hidden"
        return {"trial": trial["trial"], "network": "hidden" if blind else network, "perturbation": shown_p,
                "description": description, "attributes": trial["attributes"], "size_levels": list(SIZE_LEVELS)}

    def commit(self, trial_id: str, request) -> dict:
        """Record the person's prediction of a started trial, measure it, log it; the answer reveals all."""
        with self.lock:
            trial = self.pending.get(trial_id)
        if trial is None:
            raise LookupError(f"no trial {short(trial_id)} waiting for a prediction (committed already, "
                              f"or the server restarted)")
        direction, size, confidence = _prediction(request, trial["attributes"])
        bench, p = self.bench, trial["perturbation"]
        measured, _ = bench.measure(p)
        predicted = bench.predict(p)
        index = [bench.attributes.index(a) for a in trial["attributes"]]
        record = {"version": LOG_VERSION, "trial": trial["trial"],
                  "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "network": trial["network"], "blind": trial["blind"], "source": trial["source"],
                  "perturbation": {k: v for k, v in p.to_json().items() if k != "network"},
                  "description": trial["description"], "attributes": trial["attributes"],
                  "person": [d * s for d, s in zip(direction, size)], "direction": direction, "size": size,
                  "confidence": confidence, "formula": [predicted[k]["change"] for k in index],
                  "measured": [measured[k]["logit_change"] for k in index],
                  "measured_abs": [measured[k]["abs_logit_change"] for k in index],
                  "accuracy_change": [measured[k]["accuracy_change"] for k in index],
                  "seconds": round(time.monotonic() - trial["started"], 2)}
        with self.lock:
            if self.pending.pop(trial_id, None) is None:       # a second commit of the same trial raced this one
                raise LookupError(f"trial {trial_id!r} was committed already")
            append_trial(self.log, record)
        return {"trial": trial_id, "network": trial["network"], "attributes": trial["attributes"],
                "person": record["person"], "predicted": [predicted[k] for k in index],
                "measured": [measured[k] for k in index], "score": self.score()}

    def score(self) -> dict:
        """The score of every logged trial (see :func:`hpnet.predictability.human.score_trials`)."""
        with self.lock:
            result = score_log(self.log, self.n_boot)
        result.pop("log")                                         # the page has no use for the server's paths
        return result


def _prediction(request, shown: list[str]) -> tuple[list[int], list[int], float]:
    if not isinstance(request, dict) or not isinstance(request.get("predictions"), dict):
        raise HPNetError("a commit must be a JSON object with \"predictions\": {attribute: {\"direction\", \"size\"}}")
    predictions = request["predictions"]
    missing = [a for a in shown if a not in predictions]
    extra = sorted(set(predictions) - set(shown))
    if missing or extra:
        raise HPNetError(f"predictions must cover exactly the shown attributes {shown}: "
                         + (f"{missing[0]!r} is missing" if missing else f"{extra[0]!r} was not shown"))
    direction, size = [], []
    for a in shown:
        item = predictions[a]
        if not isinstance(item, dict):
            raise HPNetError(f"prediction for {a!r} must be {{\"direction\": -1|0|1, \"size\": 0..3}}")
        d, s = item.get("direction"), item.get("size")
        if d not in (-1, 0, 1) or isinstance(d, bool) or not isinstance(d, int):
            raise HPNetError(f"prediction for {a!r}: direction must be -1, 0 or 1, got {short(d)}")
        if not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < len(SIZE_LEVELS):
            raise HPNetError(f"prediction for {a!r}: size must be 0..{len(SIZE_LEVELS) - 1} "
                             f"({', '.join(SIZE_LEVELS)}), got {short(s)}")
        if (d == 0) != (s == 0):
            raise HPNetError(f"prediction for {a!r}: \"no change\" goes with size none, and a direction with a size")
        direction.append(d)
        size.append(s)
    confidence = request.get("confidence", 0.5)
    if not isinstance(confidence, (int, float)) or isinstance(confidence, bool) or not 0 <= confidence <= 1:
        raise HPNetError(f"confidence must be a number in [0, 1], got {short(confidence)}")
    return direction, size, float(confidence)


def _describe(p: Perturbation, bench: Workbench) -> str:
    parts = [describe_off(p.off)] if p.off else []
    own_n, own_beta = bench.networks[p.network].own_tone
    changed = [(a, n, b) for a, n, b, n0, b0 in zip(bench.attributes, p.n, p.beta, own_n, own_beta)
               if (n, b) != (n0, b0)]
    if changed and len({(n, b) for _, n, b in changed}) == 1 and len(changed) == len(bench.attributes):
        parts.append(f"tone curve n = {changed[0][1]:g}, beta = {changed[0][2]:g} on every attribute's masks")
    else:
        parts += [f"tone curve n = {n:g}, beta = {b:g} on {a}'s masks" for a, n, b in changed]
    return "; ".join(parts) or "no change"

