"""Taking part in a study: invitations, consent, the current item, answers and ratings.

:class:`Study` is plain library code over the study's database (no HTTP: :mod:`.app` serves it).
A participant is known by an unguessable token (``secrets.token_urlsafe``) of which only the
SHA-256 is stored, compared in constant time. What a participant is sent of an item is the card
(and the formula's prediction in the "formula" condition), never the measured change before they
commit; after a learning item's answer the measured change is shown, after a test item's nothing.
The current item is the first of the participant's own order not yet answered, so a reload (or a
restarted server) continues where they were; an answer is one transaction, and an item is answered
once (the database refuses a second).
"""
from __future__ import annotations

import hmac
import json
import math
import secrets
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from ..errors import HPNetError
from ..hitl.trials import read_prediction
from ..operations.base import short
from ..predictability.human import DIRECTION_TOLERANCE, SIZE_LEVELS
from . import store

ANSWER_KEYS = ("item", "predictions", "confidence")


class Refused(HPNetError):
    """A request this participant may not make now (HTTP 409): not their current item, answered already."""


class Unknown(HPNetError):
    """No such participant, or no such item for this participant (HTTP 404)."""


class Expired(HPNetError):
    """An invitation older than the protocol's ``expires_days`` (HTTP 403)."""


class Study:
    """The study in folder ``path`` (its ``study.sqlite``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.db = self.path / store.DB_FILE
        conn = store.connect(self.db)
        try:
            store.check(conn, self.db)
            self.protocol = store.protocol(conn)
            self.items = store.item_rows(conn)
            self.networks = {r["label"]: dict(r) for r in conn.execute("SELECT * FROM networks ORDER BY label")}
        finally:
            conn.close()
        self.settings = self.protocol["settings"]
        self.learn = [i for i, item in self.items.items() if item["phase"] == "learn"]
        self.test = [i for i, item in self.items.items() if item["phase"] == "test"]

    def connect(self) -> sqlite3.Connection:
        return store.connect(self.db)

    def measurable(self) -> dict[str, float]:
        """Per network label, the share of its items' shown attributes (checks left out) whose
        measured change is at least ``DIRECTION_TOLERANCE`` logit sd: an item bank where few are
        says little about people (they are right to say "no change")."""
        out = {}
        for label in self.networks:
            changes = [abs(m) for item in self.items.values() if item["network"] == label and not item["is_check"]
                       for m in item["measured"]]
            out[label] = float(np.mean(np.asarray(changes) >= DIRECTION_TOLERANCE)) if changes else math.nan
        return out

    # -- joining ------------------------------------------------------------------------------

    def invite(self, n: int, source: str = "invited") -> list[str]:
        """``n`` new participants; their tokens (printed once: only their hashes are stored)."""
        tokens = [secrets.token_urlsafe(24) for _ in range(n)]
        conn = self.connect()
        try:
            with store.transaction(conn):
                for token in tokens:
                    self._add(conn, token, source)
        finally:
            conn.close()
        return tokens

    def _add(self, conn: sqlite3.Connection, token: str, source: str) -> None:
        counts = dict(conn.execute("SELECT condition, COUNT(*) FROM participants GROUP BY condition").fetchall())
        condition = min(self.settings["conditions"], key=lambda c: counts.get(c, 0))   # balanced, in order on ties
        pid = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM participants").fetchone()[0]
        rng = np.random.default_rng([int(self.settings["seed"]), pid])
        order = [self.learn[i] for i in rng.permutation(len(self.learn))] + \
                [self.test[i] for i in rng.permutation(len(self.test))]
        conn.execute("INSERT INTO participants (id, token_hash, condition, source, created, item_order) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (pid, store.token_hash(token), condition, source, _now(), json.dumps(order)))

    def enrol(self) -> str:
        """A token for a participant who joins by the study's address (when the protocol allows it)."""
        if not self.settings.get("self_enrol"):
            raise Unknown("this study takes invited participants only")
        return self.invite(1, "self-enrolled")[0]

    def participant(self, conn: sqlite3.Connection, token) -> dict:
        """The participant of ``token``; :class:`Unknown` for an unknown or expired token."""
        if not isinstance(token, str) or not 8 <= len(token) <= 100:
            raise Unknown("unknown participant link")
        digest = store.token_hash(token)
        row = conn.execute("SELECT * FROM participants WHERE token_hash = ?", (digest,)).fetchone()
        if row is None or not hmac.compare_digest(row["token_hash"], digest):
            raise Unknown("unknown participant link")
        created = datetime.fromisoformat(row["created"])
        if datetime.now(timezone.utc) - created > timedelta(days=float(self.settings["expires_days"])):
            raise Expired("this participant link has expired")
        out = dict(row)
        out["item_order"] = json.loads(out["item_order"])
        out["answered"] = conn.execute("SELECT COUNT(*) FROM answers WHERE participant = ?", (row["id"],)).fetchone()[0]
        return out

    # -- taking part --------------------------------------------------------------------------

    def state(self, token) -> dict:
        """Where the participant is: consent given, items answered of how many, the information sheet."""
        conn = self.connect()
        try:
            p = self.participant(conn, token)
        finally:
            conn.close()
        return {"consented": p["consented"] is not None, "answered": p["answered"], "items": len(p["item_order"]),
                "learn": len(self.learn), "done": p["answered"] >= len(p["item_order"]),
                "condition": p["condition"], "info_sheet": self.protocol["info_sheet"],
                "networks": list(self.networks), "size_levels": list(SIZE_LEVELS)}

    def consent(self, token, body) -> dict:
        if body not in ({}, None):
            raise HPNetError("consent takes an empty JSON object")
        conn = self.connect()
        try:
            with store.transaction(conn):
                p = self.participant(conn, token)
                if p["consented"] is None:
                    conn.execute("UPDATE participants SET consented = ? WHERE id = ?", (_now(), p["id"]))
        finally:
            conn.close()
        return {"consented": True}

    def current(self, token) -> dict:
        """The participant's current item as they see it, or ``{"done": true}``."""
        conn = self.connect()
        try:
            with store.transaction(conn):
                p = self.participant(conn, token)
                if p["consented"] is None:
                    raise Refused("consent first (POST consent)")
                if p["answered"] >= len(p["item_order"]):
                    return {"done": True, "answered": p["answered"]}
                if p["shown_at"] is None:
                    conn.execute("UPDATE participants SET shown_at = ? WHERE id = ?", (time.time(), p["id"]))
        finally:
            conn.close()
        item = self.items[p["item_order"][p["answered"]]]
        shown = {"item": item["id"], "phase": item["phase"], "position": p["answered"] + 1,
                 "items": len(p["item_order"]), "network": item["network"], "operation": item["operation"],
                 "description": item["card"]["description"], "card": item["card"]["cards"],
                 "roles": item["card"].get("roles", {}),
                 "attributes": item["attributes"], "size_levels": list(SIZE_LEVELS)}
        if p["condition"] == "formula":
            shown["formula"] = item["formula"]
        return shown

    def answer(self, token, body) -> dict:
        """Store the answer to the current item (one transaction); a learning item's answer is
        followed by its measured change, a test item's by nothing."""
        if not isinstance(body, dict):
            raise HPNetError("an answer must be a JSON object with \"item\", \"predictions\" and \"confidence\"")
        conn = self.connect()
        try:
            with store.transaction(conn):
                p = self.participant(conn, token)
                item = self._answerable(p, body.get("item"))
                direction, size, confidence = read_prediction(body, item["attributes"], ANSWER_KEYS)
                seconds = round(time.time() - p["shown_at"], 2) if p["shown_at"] else None
                try:
                    conn.execute("INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                 (p["id"], item["id"], p["answered"], item["phase"], json.dumps(direction),
                                  json.dumps(size), confidence, seconds, _now()))
                except sqlite3.IntegrityError:
                    raise Refused(f"item {item['id']} was answered already") from None
                last = p["answered"] + 1 >= len(p["item_order"])
                conn.execute("UPDATE participants SET shown_at = NULL, finished = ? WHERE id = ?",
                             (_now() if last else None, p["id"]))
        finally:
            conn.close()
        out = {"item": item["id"], "stored": True, "done": last}
        if item["phase"] == "learn":
            out["measured"] = item["measured"]
            out["measured_direction"] = [0 if abs(m) < DIRECTION_TOLERANCE else int(np.sign(m)) for m in item["measured"]]
        return out

    def _answerable(self, p: dict, item_id) -> dict:
        if not isinstance(item_id, str) or item_id not in p["item_order"]:
            raise Unknown(f"no item {short(item_id)} for this participant")
        position = p["item_order"].index(item_id)
        if position < p["answered"]:
            raise Refused(f"item {item_id} was answered already")
        if p["consented"] is None:
            raise Refused("consent first (POST consent)")
        if position > p["answered"]:
            raise Refused(f"item {item_id} is not the current item; answer the items in order (GET item)")
        return self.items[item_id]

    def rate(self, token, body) -> dict:
        """How predictable each network felt, 1 (not at all) .. 7 (fully): ``{"A": 5, "B": 3}``."""
        if not isinstance(body, dict) or not body:
            raise HPNetError(f"a rating is a JSON object {{network label: 1..7}} for some of {', '.join(self.networks)}")
        for label, value in body.items():
            if label not in self.networks:
                raise HPNetError(f"no network {short(label)} (the networks are {', '.join(self.networks)})")
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 7:
                raise HPNetError(f"rating of {label} must be an integer 1..7, got {short(value)}")
        conn = self.connect()
        try:
            with store.transaction(conn):
                p = self.participant(conn, token)
                if p["answered"] < len(p["item_order"]):
                    raise Refused("the networks are rated after the last item")
                conn.executemany("INSERT OR REPLACE INTO ratings VALUES (?, ?, ?, ?)",
                                 [(p["id"], label, value, _now()) for label, value in body.items()])
        finally:
            conn.close()
        return {"rated": sorted(body)}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
