"""Predict, then see: trials proposed to a person, committed predictions, the log and its score.

A trial is started with a perturbation on one network (or, blind, on one of the run's networks
drawn at random): random (a family drawn uniformly among the registered operations that apply to
the network, blind: to every network, then its ``op.draw``) or the person's own. Before committing
the person sees the description, the shown attributes and the operations' cards on them (facts,
never the formula's output or a measurement); the measurement is computed only when the person
commits a prediction, and the committed trial is appended to the log
(:func:`hpnet.predictability.human.append_trial`: flushed and fsynced) before the answer goes back.
Trials started but not committed live only in memory. A logged line (version 2) adds to the
fields of :mod:`hpnet.predictability.human`:

    "network": "demo (attention)"          # Run.network_name, as predictability.json names it
    "operation": "scale"                   # the operation's name ("prune+tone" for a composition)
    "params": {"operation": "scale", "channels": [3], "alpha": 0.5}
                                           # op.to_json; a composition: {"operations": [op.to_json, ...]}
    "perturbation": the same as "params" (the field of version 1, kept)

so ``Workbench.perturbation({"network": line["network"], **line["params"]})`` rebuilds the
perturbation. Lines of version 1 (networks "attention"/"plain", "perturbation": {"off", "n",
"beta"}) are still read and scored.
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path

from ..errors import HPNetError
from ..operations.base import short
from ..predictability.human import LOG_VERSION, SIZE_LEVELS, append_trial, check_log_writable, score_log_bytes
from .perturbation import Perturbation
from .workbench import Workbench

TRIAL_ATTRIBUTES = 4      # attributes a person predicts per trial
MAX_PENDING = 256         # trials started and not committed, oldest forgotten first
MODES = ("random", "own")


class LogUnwritable(RuntimeError):
    """The trial log could not be appended to; the trial it was for is still pending."""


class TrialDesk:
    """Trials of one workbench, logged to ``log`` (``RUN/hitl/trials.jsonl``)."""

    def __init__(self, bench: Workbench, log: str | Path, attributes: int = TRIAL_ATTRIBUTES, n_boot: int = 1000):
        self.bench, self.log, self.attributes, self.n_boot = bench, Path(log), attributes, n_boot
        check_log_writable(self.log)
        self.pending: OrderedDict[str, dict] = OrderedDict()
        self.lock = threading.Lock()

    def start(self, request) -> dict:
        """A new trial from ``{"mode": "random" | "own", "network": name | "blind", "perturbation"}``.

        The answer holds what the person may see before committing: the description, the shown
        attributes and the cards of the operations on them (facts only: no formula output, no
        measurement); a blind trial hides the network's name."""
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
        p = self._own(request.get("perturbation"), network, blind) if mode == "own" else \
            bench.random_perturbation(network, blind)
        K = len(bench.attributes)
        index = sorted(bench.rng.choice(K, size=min(self.attributes, K), replace=False).tolist())
        trial = {"trial": secrets.token_hex(8), "network": network, "blind": blind, "source": mode,
                 "perturbation": p, "description": bench.describe(p),
                 "attributes": [bench.attributes[k] for k in index], "started": time.monotonic()}
        with self.lock:
            self.pending[trial["trial"]] = trial
            while len(self.pending) > MAX_PENDING:
                self.pending.popitem(last=False)
        shown = {**p.to_json(), "network": "hidden" if blind else network}
        return {"trial": trial["trial"], "network": shown["network"], "operation": p.operation, "perturbation": shown,
                "description": trial["description"], "attributes": trial["attributes"],
                "cards": bench.cards_json(p, index), "size_levels": list(SIZE_LEVELS)}

    def _own(self, spec, network: str, blind: bool) -> Perturbation:
        """The person's perturbation on ``network``; blind, it must be one every network takes (checked
        on each, the networks' names hidden in the error)."""
        if not isinstance(spec, dict):
            raise HPNetError("mode \"own\" needs a \"perturbation\"")
        bench = self.bench
        if not blind:
            return bench.perturbation({**spec, "network": network})
        everywhere = {op.name for op in bench.operations()}
        for name in bench.networks:
            try:
                p = bench.perturbation({**spec, "network": name})
            except HPNetError as e:
                message = str(e)
                for hidden in bench.networks:
                    message = message.replace(hidden, "hidden")
                raise HPNetError(f"a blind trial's perturbation must fit every network: {message}") from None
            if any(s.op.name not in everywhere for s in p.steps):
                raise HPNetError(f"a blind trial can only use operations that apply to every (hidden) network "
                                 f"({', '.join(sorted(everywhere))}); {p.operation} does not")
        return bench.perturbation({**spec, "network": network})

    def commit(self, trial_id: str, request) -> dict:
        """Record the person's prediction of a started trial, measure it, log it; the answer reveals all."""
        with self.lock:
            trial = self.pending.get(trial_id)
        if trial is None:
            raise LookupError(f"no trial {short(trial_id)} waiting for a prediction (committed already, "
                              f"or the server restarted)")
        direction, size, confidence = read_prediction(request, trial["attributes"])
        bench, p = self.bench, trial["perturbation"]
        measured, _ = bench.measure(p)
        predicted = bench.predicted(p)
        index = [bench.attributes.index(a) for a in trial["attributes"]]
        record = {"version": LOG_VERSION, "trial": trial["trial"],
                  "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "network": trial["network"], "blind": trial["blind"], "source": trial["source"],
                  "operation": p.operation, "params": p.params_json(), "perturbation": p.params_json(),
                  "description": trial["description"], "attributes": trial["attributes"],
                  "person": [d * s for d, s in zip(direction, size)], "direction": direction, "size": size,
                  "confidence": confidence, "formula": [predicted[k]["change"] for k in index],
                  "measured": [measured[k]["logit_change"] for k in index],
                  "measured_abs": [measured[k]["abs_logit_change"] for k in index],
                  "accuracy_change": [measured[k]["accuracy_change"] for k in index],
                  "seconds": round(time.monotonic() - trial["started"], 2)}
        with self.lock:
            if trial_id not in self.pending:                   # a second commit of the same trial raced this one
                raise LookupError(f"trial {trial_id!r} was committed already")
            try:
                append_trial(self.log, record)
            except OSError as e:                               # the trial stays open: the person can commit again
                raise LogUnwritable(f"the trial log cannot be written ({e.strerror or e}); the trial is still "
                                    f"open, commit again once the log can be written") from None
            del self.pending[trial_id]
        return {"trial": trial_id, "network": trial["network"], "operation": p.operation,
                "attributes": trial["attributes"], "person": record["person"],
                "predicted": [predicted[k] for k in index], "measured": [measured[k] for k in index],
                "score": self.score()}

    def score(self) -> dict:
        """The score of every logged trial (see :func:`hpnet.predictability.human.score_trials`).

        The log is read under the lock (so no half-appended line is read as damage) and scored after
        it is released: commits never wait for a score."""
        with self.lock:
            raw = self.log.read_bytes() if self.log.is_file() else b""
        result = score_log_bytes(raw, self.log, self.n_boot)
        result.pop("log")                                         # the page has no use for the server's paths
        return result


def read_prediction(body, shown: list[str], keys: tuple[str, ...] = ("predictions", "confidence")
                    ) -> tuple[list[int], list[int], float]:
    """Direction (-1, 0, 1) and size (0..3) per shown attribute, and the confidence (default 0.5),
    from a committed prediction ``{"predictions": {attribute: {"direction", "size"}}, "confidence"}``
    whose keys are among ``keys``; one-line errors."""
    if not isinstance(body, dict) or not isinstance(body.get("predictions"), dict):
        raise HPNetError("a commit must be a JSON object with \"predictions\": {attribute: {\"direction\", \"size\"}}")
    unknown = sorted(set(body) - set(keys))
    if unknown:
        raise HPNetError(f"unknown key {unknown[0][:40]!r} in the commit (known: {', '.join(keys)})")
    predictions = body["predictions"]
    missing = [a for a in shown if a not in predictions]
    extra = sorted(set(predictions) - set(shown))
    if missing or extra:
        raise HPNetError(f"predictions must cover exactly the shown attributes {shown}: "
                         + (f"{missing[0]!r} is missing" if missing else f"{extra[0][:40]!r} was not shown"))
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
    confidence = body.get("confidence", 0.5)
    if not isinstance(confidence, (int, float)) or isinstance(confidence, bool) or not 0 <= confidence <= 1:
        raise HPNetError(f"confidence must be a number in [0, 1], got {short(confidence)}")
    return direction, size, float(confidence)
