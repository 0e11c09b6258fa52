"""The study server under load: simulated participants committing answers over HTTP on 127.0.0.1.

``hpnet study serve`` runs in its own process (waitress, its default threads); each simulated
participant is a thread of this process that consents, then fetches its current item and answers
it, as the page does, until every item is answered. A commit is timed from the request to the
answer. The item bank is made up (two networks, prune and scale items with cards of the usual
shape): the commit path (token, transaction, SQLite in WAL mode) does not depend on the networks.
Afterwards the database is counted: every acknowledged answer must be there.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from ..study import store
from ..study.protocol import INFO_SHEET
from ..study.session import Study

ATTRIBUTES = ["Smiling", "Male", "Eyeglasses", "Bald"]


def commit_latency(participants: int = 50, items: int = 16, quick: bool = False) -> dict:
    """Median, 95th percentile and largest commit latency (ms), answers acknowledged and lost."""
    participants, items = (10, 6) if quick else (participants, items)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "study"
        made_up_study(folder, items)
        tokens = Study(folder).invite(participants)
        server = subprocess.Popen([sys.executable, "-m", "hpnet", "study", "serve", str(folder), "--port", "0"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            base = re.search(r"at (http://\S+?)/ ", server.stdout.readline()).group(1)
            start = time.perf_counter()
            times, errors = _participants(base, tokens)
            seconds = time.perf_counter() - start
        finally:
            server.terminate()
            server.wait(timeout=30)
        conn = store.connect(folder / store.DB_FILE)
        stored = conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        conn.close()
    ms = 1e3 * np.asarray(times) if times else np.zeros(1)
    return {"participants": participants, "items": items, "answers": len(times), "stored": int(stored),
            "lost": len(times) - int(stored), "errors": errors, "median_ms": float(np.median(ms)),
            "p95_ms": float(np.percentile(ms, 95)), "max_ms": float(ms.max()), "seconds": seconds,
            "answers_per_s": len(times) / seconds if seconds else 0.0}


def _participants(base: str, tokens: list[str]) -> tuple[list[float], list[str]]:
    times, errors, lock = [], [], threading.Lock()

    def person(token: str) -> None:
        try:
            _call(f"{base}/p/{token}/api/consent", {})
            while not (item := _call(f"{base}/p/{token}/api/item")).get("done"):
                body = {"item": item["item"], "confidence": 0.5,
                        "predictions": {a: {"direction": 1, "size": 2} for a in item["attributes"]}}
                t = time.perf_counter()
                _call(f"{base}/p/{token}/api/answer", body)
                with lock:
                    times.append(time.perf_counter() - t)
        except Exception as e:                              # counted: a bench reports, it does not stop
            with lock:
                errors.append(f"{type(e).__name__}: {str(e)[:100]}")

    threads = [threading.Thread(target=person, args=(token,)) for token in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, errors


def _call(url: str, body=None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                     headers={"Content-Type": "application/json"} if data is not None else {})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def made_up_study(folder: Path, items: int) -> None:
    """A study database with ``items`` made-up items over two networks (half learning, half test)."""
    folder.mkdir(parents=True)
    conn = store.create(folder / store.DB_FILE)
    rng = np.random.default_rng(0)
    protocol = {"settings": {"conditions": ["formula", "no-formula"], "seed": 0, "expires_days": 30.0,
                             "self_enrol": False}, "info_sheet": INFO_SHEET, "attributes": ATTRIBUTES}
    with store.transaction(conn):
        conn.execute("INSERT INTO meta VALUES ('protocol', ?), ('version', ?), ('created', '')",
                     (json.dumps(protocol), str(store.VERSION)))
        conn.executemany("INSERT INTO networks VALUES (?, ?, ?, ?)",
                         [("A", "bench (attention)", "-", "attention"), ("B", "bench/plain (linear)", "-", "linear")])
        for i in range(items):
            evidence = rng.normal(size=len(ATTRIBUTES)).round(4).tolist()
            card = {"description": f"switch channel {i} off", "cards": [{
                "operation": "prune", "description": f"switch channel {i} off", "labels": {"evidence": "signed"},
                "common": {"channels": [i]}, "attributes": [{"attribute": a, "evidence": e}
                                                             for a, e in zip(ATTRIBUTES, evidence)]}]}
            conn.execute("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)", (
                f"i{i:08x}", "learn" if i < items // 2 else "test", "AB"[i % 2], "prune",
                json.dumps({"operation": "prune", "channels": [i]}), json.dumps(ATTRIBUTES), json.dumps(card),
                json.dumps([-e for e in evidence]), json.dumps(rng.normal(size=len(ATTRIBUTES)).round(4).tolist())))
    conn.close()
