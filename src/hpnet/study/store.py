"""A study's database: ``STUDY/study.sqlite`` (SQLite in WAL mode), the one place a study lives.

Tables (JSON columns hold JSON text):

    meta(key, value)                     "protocol" (the settings), "version", "created"
    networks(label, identity, run, head) "A", "demo (attention)", the run folder, its head family
    items(id, phase, network, operation, params, attributes, card, formula, measured, is_check)
        phase "learn" | "test"; card: what a person is shown (the operations' cards on the shown
        attributes and the description); formula / measured: one signed change per shown attribute
        (in logit standard deviations of the network on the study's images)
    participants(id, token_hash, condition, source, created, consented, item_order, shown_at, finished)
        the SHA-256 of the participant's token (the token itself is only ever printed once);
        item_order: the item ids in the order this participant answers them
    answers(participant, item, ordinal, phase, direction, size, confidence, seconds, time)
        direction and size: JSON lists, one per shown attribute; (participant, item) and
        (participant, ordinal) are unique, so an item is answered once and in order
    ratings(participant, network, value, time)   how predictable each network felt, 1..7

Every write is one transaction (``BEGIN IMMEDIATE``) with ``synchronous=FULL``: an answer that was
acknowledged survives a killed server. Connections are short-lived, one per call site.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

from ..errors import HPNetError

DB_FILE = "study.sqlite"
VERSION = 1
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE networks (label TEXT PRIMARY KEY, identity TEXT NOT NULL, run TEXT NOT NULL, head TEXT NOT NULL);
CREATE TABLE items (
    id TEXT PRIMARY KEY, phase TEXT NOT NULL CHECK (phase IN ('learn', 'test')),
    network TEXT NOT NULL REFERENCES networks(label), operation TEXT NOT NULL, params TEXT NOT NULL,
    attributes TEXT NOT NULL, card TEXT NOT NULL, formula TEXT NOT NULL, measured TEXT NOT NULL,
    is_check INTEGER NOT NULL DEFAULT 0);
CREATE TABLE participants (
    id INTEGER PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, condition TEXT NOT NULL, source TEXT NOT NULL,
    created TEXT NOT NULL, consented TEXT, item_order TEXT NOT NULL, shown_at REAL, finished TEXT);
CREATE TABLE answers (
    participant INTEGER NOT NULL REFERENCES participants(id), item TEXT NOT NULL REFERENCES items(id),
    ordinal INTEGER NOT NULL, phase TEXT NOT NULL, direction TEXT NOT NULL, size TEXT NOT NULL,
    confidence REAL NOT NULL, seconds REAL, time TEXT NOT NULL,
    PRIMARY KEY (participant, item), UNIQUE (participant, ordinal));
CREATE TABLE ratings (
    participant INTEGER NOT NULL REFERENCES participants(id), network TEXT NOT NULL REFERENCES networks(label),
    value INTEGER NOT NULL CHECK (value BETWEEN 1 AND 7), time TEXT NOT NULL, PRIMARY KEY (participant, network));
"""
TABLES = ("meta", "networks", "items", "participants", "answers", "ratings")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection to an existing study database (rows as ``sqlite3.Row``); one line when the file
    is missing or is not a study database."""
    path = Path(path)
    if not path.is_file():
        raise HPNetError(f"{path}: no study database (create one with `hpnet study create`)")
    try:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as e:
        raise HPNetError(f"{path}: not a readable study database ({e})") from None
    missing = [t for t in TABLES if t not in names]
    if missing:
        conn.close()
        raise HPNetError(f"{path}: not a study database (no table {missing[0]!r})")
    return conn


def create(path: str | Path) -> sqlite3.Connection:
    """A new, empty study database at ``path`` in WAL mode."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(SCHEMA)
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at once (``BEGIN IMMEDIATE``): committed whole or rolled back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def check(conn: sqlite3.Connection, path: Path) -> None:
    """One line when the database is damaged (SQLite's quick check) or its protocol unreadable."""
    try:
        verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
        protocol(conn)
    except (sqlite3.DatabaseError, ValueError, TypeError) as e:
        raise HPNetError(f"{path}: the study database is damaged ({str(e)[:100]})") from None
    if verdict != "ok":
        raise HPNetError(f"{path}: the study database is damaged ({verdict[:100]})")


def protocol(conn: sqlite3.Connection) -> dict:
    row = conn.execute("SELECT value FROM meta WHERE key='protocol'").fetchone()
    if row is None:
        raise ValueError("no protocol")
    return json.loads(row[0])


def item_rows(conn: sqlite3.Connection) -> dict[str, dict]:
    """Every item as a dict (JSON columns decoded), by id."""
    out = {}
    for r in conn.execute("SELECT * FROM items"):
        item = dict(r)
        for key in ("params", "attributes", "card", "formula", "measured"):
            item[key] = json.loads(item[key])
        out[item["id"]] = item
    return out


def answer_rows(conn: sqlite3.Connection) -> list[dict]:
    """Every answer with its participant's condition, in (participant, ordinal) order."""
    rows = conn.execute("SELECT a.*, p.condition FROM answers a JOIN participants p ON p.id = a.participant "
                        "ORDER BY a.participant, a.ordinal").fetchall()
    out = []
    for r in rows:
        row = dict(r)
        row["direction"], row["size"] = json.loads(row["direction"]), json.loads(row["size"])
        out.append(row)
    return out
