"""A study's protocol and its item bank, drawn once: ``hpnet study create``.

An *item* is one perturbation of one network with the attributes a person predicts on it: the
network (shown as a blind label A, B, C, ...), one registered operation with its parameters
(``op.draw``), the shown attributes, what the person is shown (the operation's card on those
attributes, and its description), and, stored for the score, the formula's prediction and the
measured change of each shown attribute (signed, in logit standard deviations, as the page
measures them). Items are balanced over networks (``learn`` and ``test`` items each) and, within a
network and phase, over the operation families (drawn round-robin from a shuffled list of the
families that apply to *every* network, so a family never tells the networks apart).

Attention checks are test items whose answer is plain from the card: a channel multiplied by 1
("scale" with alpha 1), which changes nothing; a participant passes one by predicting no change for
every shown attribute. The exclusion rule (:data:`EXCLUDE_BELOW`) is stated in the protocol.

Every participant answers the same items: the learning items first (with feedback), then the test
items, each phase in the participant's own random order.
"""
from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import checks
from ..errors import HPNetError
from ..folders import FolderTaken, is_empty, staged
from ..hitl import Workbench
from ..hitl.perturbation import Perturbation, Step
from ..io import atomic_write_json, check_output
from ..operations import OPERATIONS
from . import store

CONDITIONS = ("formula", "no-formula")
CHECK_OPERATION = {"operation": "scale", "alpha": 1.0}   # a channel multiplied by 1: no change, plain from the card
PROTOCOL_FILE = "study.json"   # the protocol, also in the database's meta table
EXCLUDE_BELOW = 0.5        # participants passing fewer than this share of their attention checks are excluded
INFO_SHEET = (
    "This study asks you to predict how a neural network's answers change when the network itself is "
    "changed: channels switched off or scaled, or a curve applied to its attention masks. Each question "
    "shows what was changed and facts about it; you predict, for each listed attribute, whether the "
    "network's score for it goes up, down or stays the same, and by how much. In the first part you see "
    "the true change after each answer, to learn; in the second part you do not. It takes about 15 "
    "minutes. Your answers are stored with a random identifier only, and you can stop at any time.")


@dataclass
class StudySettings:
    """What ``hpnet study create`` draws (defaults are the command line's)."""

    networks: Sequence[str] = field(default=(), metadata={
        "flag": "--networks", "help": "run folders compared, comma separated (shown blind as A, B, ...)"})
    operations: Sequence[str] | None = field(default=None, metadata={
        "flag": "--operations", "choices": OPERATIONS,
        "help": "operation families (default every one that applies to all networks)"})
    learn: int = field(default=2, metadata={"flag": "--learn", "help": "learning items per network (default {default})"})
    test: int = field(default=6, metadata={"flag": "--test", "help": "test items per network (default {default})"})
    checks: int = field(default=2, metadata={"flag": "--checks", "help": "attention-check items (default {default})"})
    conditions: Sequence[str] = field(default=CONDITIONS, metadata={
        "flag": "--conditions", "help": "between-participant conditions: formula, no-formula (default {default})"})
    attributes: int = field(default=4, metadata={"flag": "--attributes-shown",
                                                 "help": "attributes predicted per item (default {default})"})
    images: int = field(default=256, metadata={"flag": "--images",
                                               "help": "evaluation images each change is measured on (default {default})"})
    seed: int = field(default=0, metadata={"flag": "--seed", "help": "seed of the item bank (default {default})"})
    self_enrol: bool = field(default=False, metadata={"flag": "--self-enrol",
                                                      "help": "anyone with the study's address may join"})
    expires_days: float = field(default=30.0, metadata={"flag": "--expires-days",
                                                        "help": "days an invitation stays valid (default {default})"})

    def __post_init__(self) -> None:
        self.networks = checks.names(self.networks, "--networks")
        if not self.networks:
            raise HPNetError("--networks: give at least one run folder")
        if self.operations is not None:
            self.operations = checks.names(self.operations, "--operations")
            for name in self.operations:
                OPERATIONS.get(name)
        checks.count(self.learn, "--learn", smallest=0)
        checks.count(self.test, "--test")
        checks.count(self.checks, "--checks", smallest=0)
        checks.count(self.attributes, "--attributes-shown")
        checks.count(self.images, "--images")
        self.seed = checks.seed(self.seed, "--seed")
        self.conditions = checks.names(self.conditions, "--conditions")
        for c in self.conditions:
            checks.choice(c, "--conditions", CONDITIONS)
        if not self.conditions or len(set(self.conditions)) != len(self.conditions):
            raise HPNetError(f"--conditions: give each of {', '.join(CONDITIONS)} at most once")
        checks.number(self.expires_days, "--expires-days", 0, low_open=True)


def create_study(out: str | Path, settings: StudySettings, progress: bool = True) -> Path:
    """Draw the item bank of ``settings`` and write the study to ``out/study.sqlite``; returns its path.

    The folder is written whole (built beside its place and renamed), so a study is complete or
    absent; a folder holding files is refused."""
    out = check_output(checks.path(out, "STUDY"), "STUDY", folder=True)
    if not is_empty(out):
        raise HPNetError(f"{out}: holds files already; a study is created in a new folder")
    bench = Workbench.from_runs(settings.networks, images=settings.images, progress=progress, seed=settings.seed)
    rng = np.random.default_rng(settings.seed)
    names = list(bench.networks)
    labels = {names[i]: chr(ord("A") + j) for j, i in enumerate(rng.permutation(len(names)))}
    families = _families(bench, settings.operations)
    items = draw_items(bench, labels, families, settings, rng)

    def taken(path: Path) -> FolderTaken:
        return FolderTaken(f"{path}: another command created a study there meanwhile")
    with staged(out, taken) as staging:
        conn = store.create(staging / store.DB_FILE)
        try:
            protocol = _write(conn, bench, labels, items, settings)
        finally:
            conn.close()
        atomic_write_json(protocol, staging / PROTOCOL_FILE)     # the protocol to read; the database is the record
    return out / store.DB_FILE


def _families(bench: Workbench, asked: Sequence[str] | None) -> list:
    everywhere = {op.name: op for op in bench.operations()}
    if asked is None:
        return list(everywhere.values())
    for name in asked:
        if name not in everywhere:
            raise HPNetError(f"--operations: {name} does not apply to every network (those that do: "
                             f"{', '.join(everywhere) or 'none'}); a family must not tell blind networks apart")
    return [everywhere[name] for name in asked]


def draw_items(bench: Workbench, labels: dict[str, str], families: list, s: StudySettings,
               rng: np.random.Generator) -> list[dict]:
    """The item bank: per network and phase, ``s.learn`` / ``s.test`` items over the families in turn,
    then ``s.checks`` attention checks spread over the networks."""
    K = len(bench.attributes)
    plan = []
    for name in sorted(labels, key=labels.get):
        net = bench.networks[name]
        for phase, count in (("learn", s.learn), ("test", s.test)):
            order = rng.permutation(len(families))
            for j in range(count):
                op = families[int(order[j % len(families)])]
                plan.append((phase, Perturbation(name, (Step(op, op.draw(rng, net.view)),)), False))
    for j in range(s.checks):
        name = sorted(labels, key=labels.get)[j % len(labels)]
        channel = int(rng.integers(bench.networks[name].view.channels))
        plan.append(("test", bench.perturbation({"network": name, **CHECK_OPERATION, "channels": [channel]}), True))
    ids = set()
    items = []
    for phase, p, is_check in plan:
        index = sorted(rng.choice(K, size=min(s.attributes, K), replace=False).tolist())
        item_id = f"i{int(rng.integers(16 ** 8)):08x}"
        while item_id in ids:
            item_id = f"i{int(rng.integers(16 ** 8)):08x}"
        ids.add(item_id)
        items.append(_item(bench, p, index, item_id, phase, labels[p.network], is_check))
    return items


def _item(bench: Workbench, p: Perturbation, index: list[int], item_id: str, phase: str, label: str,
          is_check: bool) -> dict:
    measured, _ = bench.measure(p)
    predicted = bench.predicted(p)
    cards = bench.cards_json(p, index)
    return {"id": item_id, "phase": phase, "network": label, "operation": p.operation,
            "params": p.params_json(), "attributes": [bench.attributes[k] for k in index],
            "card": {"description": bench.describe(p), "cards": cards,
                     "roles": channel_roles(bench.networks[p.network].view, cards)},
            "formula": [round(predicted[k]["change"], 6) for k in index],
            "measured": [round(measured[k]["logit_change"], 6) for k in index], "is_check": int(is_check)}


def channel_roles(view, cards: list[dict]) -> dict[str, str]:
    """Where each channel the cards name fires (its face part, or "none", from ``hpnet dissect``'s
    reading of the network's view); empty when the view knows no parts."""
    if view.roles is None:
        return {}
    channels = sorted({int(c) for card in cards for c in card.get("common", {}).get("channels", [])})
    return {str(c): view.roles[c] for c in channels if 0 <= c < len(view.roles)}


def _write(conn, bench: Workbench, labels: dict[str, str], items: list[dict], s: StudySettings) -> dict:
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    protocol = {"settings": asdict(s), "labels": {v: k for k, v in labels.items()}, "attributes": bench.attributes,
                "images": int(bench.targets.shape[0]), "exclusion": {"checks_passed_below": EXCLUDE_BELOW},
                "info_sheet": INFO_SHEET, "created": created, "python": platform.python_version()}
    with store.transaction(conn):
        conn.execute("INSERT INTO meta VALUES ('protocol', ?), ('version', ?), ('created', ?)",
                     (json.dumps(protocol), str(store.VERSION), created))
        for name, label in labels.items():
            net = bench.networks[name]
            conn.execute("INSERT INTO networks VALUES (?, ?, ?, ?)",
                         (label, name, str(net.run.path.resolve()), net.model.config.head))
        conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            (i["id"], i["phase"], i["network"], i["operation"], json.dumps(i["params"]), json.dumps(i["attributes"]),
             json.dumps(i["card"]), json.dumps(i["formula"]), json.dumps(i["measured"]), i["is_check"])
            for i in items])
    return protocol
