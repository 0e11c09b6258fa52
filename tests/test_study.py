"""The study with real people: the item bank, taking part, the score with intervals over people and items."""
from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clihelp import one_line, run_cli
from hpnet.commands import train_run
from hpnet.core.stats import spearman
from hpnet.data import DataSpec
from hpnet.errors import HPNetError
from hpnet.study import Study, StudySettings, create_study, score_study
from hpnet.study.app import create_study_app
from hpnet.study.score import joint_counts, make_pairs, network_scores, replicate_scores
from hpnet.study.session import Expired, Refused, Unknown
from hpnet.train import TrainConfig

NAMES = ["Smiling", "Male", "Eyeglasses"]
TINY = {"backbone": "strided", "widths": (4, 6, 8)}
PORT = 8124
BASE = {"base_url": f"http://127.0.0.1:{PORT}"}
ADMIN = "admin-token-for-tests"
PARTS = {"background", "neck", "hair", "ears", "face", "forehead", "cheeks", "chin", "nose", "mouth", "brows", "eyes",
         "glasses", "hat"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    """Three networks of the same data: the paper head, its plain CNN, a channel head."""
    root = tmp_path_factory.mktemp("study-runs")
    spec = DataSpec(dataset="synthetic", image_size=16, max_images=192, attributes=NAMES)
    config = TrainConfig(epochs=1, batch_size=32)
    train_run(root / "att", spec, dict(TINY), config, progress=False)
    train_run(root / "att" / "plain", spec, {**TINY, "head": "linear"}, config, progress=False)
    train_run(root / "chan", spec, {**TINY, "head": "channel"}, config, progress=False)
    return [root / "att", root / "att" / "plain", root / "chan"]


def study_settings(runs, **more) -> StudySettings:
    return StudySettings(networks=[str(r) for r in runs], **{"learn": 1, "test": 2, "checks": 2, "images": 32,
                                                              "attributes": 2, **more})


@pytest.fixture(scope="module")
def made(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study") / "s"
    create_study(out, study_settings(runs), progress=False)
    return out


@pytest.fixture
def study(made, tmp_path) -> Study:
    """A fresh copy of the made study for each test (a test's participants stay its own)."""
    import shutil
    copy = tmp_path / "study"
    shutil.copytree(made, copy)
    return Study(copy)


def answer_all(study: Study, token: str, choose=lambda item: 0) -> list[dict]:
    """Answer every item of ``token`` in order, predicting ``choose(item)`` as the direction (size 1)."""
    study.consent(token, {})
    replies = []
    while not (item := study.current(token)).get("done"):
        d = choose(item)
        replies.append(study.answer(token, {"item": item["item"], "confidence": 0.5, "predictions": {
            a: {"direction": d, "size": abs(d)} for a in item["attributes"]}}))
    return replies


# ---------------------------------------------------------------------------- the item bank

def test_the_item_bank_is_balanced_blind_and_complete(made, runs):
    conn = sqlite3.connect(made / "study.sqlite")
    conn.row_factory = sqlite3.Row
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    networks = {r["label"]: dict(r) for r in conn.execute("SELECT * FROM networks")}
    assert sorted(networks) == ["A", "B", "C"]
    assert sorted(n["identity"] for n in networks.values()) == ["att (attention)", "att/plain (linear)", "chan (channel)"]
    items = [dict(r) for r in conn.execute("SELECT * FROM items")]
    assert len(items) == 3 * (1 + 2) + 2 and len({i["id"] for i in items}) == len(items)
    for label in networks:
        own = [i for i in items if i["network"] == label and not i["is_check"]]
        assert sorted(i["phase"] for i in own) == ["learn", "test", "test"]
        assert {i["operation"] for i in own} <= {"prune", "scale"}       # tone does not apply to the plain CNN
    for item in items:
        shown, formula, measured = (json.loads(item[k]) for k in ("attributes", "formula", "measured"))
        assert len(shown) == len(formula) == len(measured) == 2 and set(shown) <= set(NAMES)
        card = json.loads(item["card"])
        assert card["description"] and [row["attribute"] for row in card["cards"][0]["attributes"]] == shown
        named = {str(c) for c in card["cards"][0]["common"].get("channels", [])}
        assert set(card["roles"]) == named and set(card["roles"].values()) <= {*Study(made).protocol.get("parts", []),
                                                                                 *PARTS, "none"}
        assert "measured" not in item["card"] and (measured[0] == 0 or str(measured[0]) not in item["card"])
    checks = [i for i in items if i["is_check"]]
    assert len(checks) == 2 and all(i["phase"] == "test" and i["operation"] == "scale" for i in checks)
    assert all(json.loads(i["measured"]) == [0.0, 0.0] and json.loads(i["formula"]) == [0.0, 0.0] for i in checks)
    protocol = json.loads(conn.execute("SELECT value FROM meta WHERE key='protocol'").fetchone()[0])
    assert json.loads((made / "study.json").read_text()) == protocol          # the readable copy
    assert protocol["settings"]["seed"] == 0 and "attention checks" not in protocol["info_sheet"]


def test_the_same_seed_draws_the_same_bank(runs, made, tmp_path):
    again = tmp_path / "again"
    create_study(again, study_settings(runs), progress=False)
    assert Study(again).items == Study(made).items


@pytest.mark.parametrize("case", ["missing run", "other attributes", "folder with files", "tone on a plain CNN",
                                  "run twice"])
def test_a_protocol_that_cannot_be_drawn_is_one_line(runs, tmp_path, capsys, case):
    out, networks, extra = tmp_path / "s", [str(r) for r in runs[:2]], []
    if case == "missing run":
        networks.append(str(tmp_path / "nope"))
        message = "run folder not found"
    elif case == "other attributes":
        other = tmp_path / "other"
        train_run(other, DataSpec(dataset="synthetic", image_size=16, max_images=64, attributes=["Smiling", "Male"]),
                  dict(TINY), TrainConfig(epochs=1, batch_size=32), progress=False)
        networks.append(str(other))
        message = "the networks must share attributes"
    elif case == "folder with files":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        message = "holds files already"
    elif case == "tone on a plain CNN":
        extra = ["--operations", "tone"]
        message = "tone does not apply to every network"
    else:
        networks.append(networks[0])
        message = "more than once"
    code, _, err = run_cli(capsys, "study", "create", out, "--networks", ",".join(networks), "--learn", "1",
                           "--test", "1", "--images", "16", "--quiet", *extra)
    one_line(code, err, naming=message)
    assert not out.exists() or [p.name for p in out.iterdir()] == ["notes.txt"]


# ---------------------------------------------------------------------------- taking part

def test_a_participant_goes_through_both_phases_in_order(study):
    token, other = study.invite(2)
    with pytest.raises(Refused, match="consent first"):
        study.current(token)
    study.consent(token, {})
    first = study.current(token)
    assert first["phase"] == "learn" and first["position"] == 1 and first["items"] == len(study.items)
    assert "measured" not in json.dumps(first)
    assert ("formula" in first) == (study.state(token)["condition"] == "formula")
    assert study.state(other)["condition"] != study.state(token)["condition"]            # conditions balanced
    order = [first["item"]]
    later = next(i for i in study.items if i != first["item"])
    with pytest.raises(Refused, match="not the current item"):
        study.answer(token, {"item": later, "predictions": {}})
    with pytest.raises(Unknown):
        study.answer(token, {"item": "i00000000", "predictions": {}})
    reply = study.answer(token, {"item": first["item"], "predictions": {
        a: {"direction": 1, "size": 2} for a in first["attributes"]}})
    assert reply["measured"] == study.items[first["item"]]["measured"]               # learning: feedback
    with pytest.raises(Refused, match="answered already"):
        study.answer(token, {"item": first["item"], "predictions": {
            a: {"direction": 1, "size": 2} for a in first["attributes"]}})
    again = Study(study.path)                                                          # a restart continues
    while not (item := again.current(token)).get("done"):
        order.append(item["item"])
        reply = again.answer(token, {"item": item["item"], "predictions": {
            a: {"direction": 0, "size": 0} for a in item["attributes"]}})
        assert ("measured" in reply) == (item["phase"] == "learn")
    assert sorted(order) == sorted(study.items) and [study.items[i]["phase"] for i in order[:3]] == ["learn"] * 3
    with pytest.raises(Refused, match="rated after the last item"):
        study.rate(other, {"A": 3})
    assert study.rate(token, {"A": 5, "C": 2}) == {"rated": ["A", "C"]}


def all_of(item, **change) -> dict:
    """A prediction of "up, small" for every shown attribute, the first one's replaced by ``change``."""
    predictions = {a: {"direction": 1, "size": 1} for a in item["attributes"]}
    predictions[item["attributes"][0]] = {"direction": 1, "size": 1, **change}
    return predictions


@pytest.mark.parametrize("make, message", [
    (lambda item: {"item": 3, "predictions": {}}, "no item 3"),
    (lambda item: "up", "must be a JSON object"),
    (lambda item: {"predictions": all_of(item)}, "no item"),
    (lambda item: {"item": item["item"], "predictions": "up"}, "\"predictions\""),
    (lambda item: {"item": item["item"], "predictions": all_of(item, direction=2)}, "direction must be -1, 0 or 1"),
    (lambda item: {"item": item["item"], "predictions": all_of(item, size=True)}, "size must be 0..3"),
    (lambda item: {"item": item["item"], "predictions": all_of(item, direction=0)}, "\"no change\" goes with"),
    (lambda item: {"item": item["item"], "predictions": {**all_of(item), "Nose": {}}}, "'Nose' was not shown"),
    (lambda item: {"item": item["item"], "predictions": all_of(item), "confidence": 2}, "confidence must be"),
    (lambda item: {"item": item["item"], "predictions": all_of(item), "extra": 1}, "unknown key 'extra'")])
def test_malformed_answers_are_one_line_and_change_nothing(study, make, message):
    token = study.invite(1)[0]
    study.consent(token, {})
    item = study.current(token)
    with pytest.raises(HPNetError, match=message):
        study.answer(token, make(item))
    assert study.current(token)["item"] == item["item"]
    assert study.answer(token, {"item": item["item"], "predictions": all_of(item)})["stored"]


def test_unknown_and_expired_links(study):
    with pytest.raises(Unknown):
        study.state("not-a-participant-token")
    token = study.invite(1)[0]
    conn = study.connect()
    conn.execute("UPDATE participants SET created = '2000-01-01T00:00:00+00:00'")
    conn.close()
    with pytest.raises(Expired):
        study.state(token)


# ---------------------------------------------------------------------------- the score

def ranks_by_hand(values) -> list[float]:
    """Each value's rank: the count of smaller values plus (the count of equal values + 1) / 2."""
    return [sum(w < v for w in values) + (sum(w == v for w in values) + 1) / 2 for v in values]


def pearson_by_hand(x, y) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    return sxy / (sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y)) ** 0.5


ITEMS = {"i1": {"network": "A", "operation": "prune", "measured": [0.5, -0.2], "formula": [0.3, -0.1], "phase": "test",
                "is_check": 0, "attributes": ["x", "y"]},
         "i2": {"network": "A", "operation": "scale", "measured": [1.0, 0.05], "formula": [0.4, 0.0], "phase": "test",
                "is_check": 0, "attributes": ["x", "y"]},
         "i3": {"network": "B", "operation": "prune", "measured": [-0.7, 0.3], "formula": [0.2, 0.1], "phase": "test",
                "is_check": 0, "attributes": ["x", "y"]}}
ANSWERS = [{"participant": 1, "item": "i1", "direction": [1, -1], "size": [2, 1], "condition": "formula"},
           {"participant": 1, "item": "i2", "direction": [1, 0], "size": [3, 0], "condition": "formula"},
           {"participant": 2, "item": "i1", "direction": [1, 1], "size": [1, 1], "condition": "no-formula"},
           {"participant": 2, "item": "i2", "direction": [-1, 0], "size": [1, 0], "condition": "no-formula"},
           {"participant": 1, "item": "i3", "direction": [-1, 1], "size": [2, 2], "condition": "formula"},
           {"participant": 2, "item": "i3", "direction": [1, 0], "size": [1, 0], "condition": "no-formula"}]


def test_the_score_equals_a_hand_computation():
    pairs = make_pairs(ANSWERS, ITEMS)
    cp, ci = joint_counts(pairs, ["A", "B"], 200, np.random.default_rng(0))
    got = network_scores(pairs, pairs.network == "A", cp, ci, 0.95)
    person = [2, -1, 3, 0, 1, 1, -1, 0]                      # participant 1 then 2, items i1, i2, attributes x, y
    measured = [0.5, -0.2, 1.0, 0.05, 0.5, -0.2, 1.0, 0.05]
    assert got["person"]["score"] == pytest.approx(pearson_by_hand(ranks_by_hand(person), ranks_by_hand(measured)))
    truth = [1, -1, 1, 0, 1, -1, 1, 0]                       # |0.05| < 0.1: no change
    said = [1, -1, 1, 0, 1, 1, -1, 0]
    assert got["person"]["direction_accuracy"] == 6 / 8
    formula = [0.3, -0.1, 0.4, 0.0] * 2
    assert got["formula"]["score"] == pytest.approx(pearson_by_hand(ranks_by_hand(formula), ranks_by_hand(measured)))
    assert got["formula"]["direction_accuracy"] == 1.0 and got["no_change"]["score"] == 0.0
    assert got["no_change"]["direction_accuracy"] == truth.count(0) / 8 and said.count(0) == 2
    assert got["person"]["ci_low"] <= got["person"]["score"] <= got["person"]["ci_high"]


def test_a_resample_counts_participants_and_items_jointly_and_exactly():
    pairs = make_pairs(ANSWERS, ITEMS)
    rng = np.random.default_rng(3)
    cp, ci = joint_counts(pairs, ["A", "B"], 50, rng)
    assert (cp.sum(1) == 2).all()                                       # every resample draws 2 participants
    assert (ci[:, [0, 1]].sum(1) == 2).all() and (ci[:, 2] == 1).all()  # and each network its own items
    sub = pairs.subset(pairs.network == "A")
    rho, accuracy = replicate_scores(sub, cp, ci)
    for b in range(50):
        weight = (cp[b, sub.participant] * ci[b, sub.item]).astype(int)
        p, m = np.repeat(sub.person, weight), np.repeat(sub.measured, weight)
        if np.ptp(p) == 0:
            assert rho["person"][b] == 0.0
        elif np.ptp(m) > 0:
            assert rho["person"][b] == pytest.approx(float(spearman(p, m)), abs=1e-12)
        right = np.repeat(np.sign(sub.person) == np.where(np.abs(sub.measured) < 0.1, 0, np.sign(sub.measured)), weight)
        assert accuracy["person"][b] == pytest.approx(right.mean())


def test_scoring_a_study_end_to_end_and_its_csv(study, capsys):
    tokens = study.invite(4)
    for i, token in enumerate(tokens):
        sign = {0: 1, 1: -1, 2: 1, 3: 0}[i]
        answer_all(study, token, lambda item, s=sign: s if not study.items[item["item"]]["is_check"] else 0)
    failed = study.invite(1)[0]
    answer_all(study, failed, lambda item: 1)                          # fails every attention check
    result = score_study(study, n_boot=100)
    assert result.participants == 5 and result.finished == 5 and result.included == 4
    assert list(result.excluded.values()) == ["passed 0 of 2 attention checks"]
    assert result.exclusion["pass_rate"] == pytest.approx(8 / 10)
    assert sorted(result.networks) == ["A", "B", "C"] and result.pairs == 4 * 3 * 2 * 2
    for net in result.networks.values():
        for who in ("person", "formula", "no_change"):
            s = net[who]
            assert set(s) >= {"score", "ci_low", "ci_high", "direction_accuracy", "direction_ci_low"}
    assert [p["a"] + p["b"] for p in result.paired] == ["AB", "AC", "BC"]
    curve = result.learning_curve
    assert [c["position"] for c in curve] == sorted(c["position"] for c in curve) and curve[0]["position"] == 1
    assert [c["phase"] for c in curve[:3]] == ["learn"] * 3 and all(c["n"] >= 1 for c in curve)
    code, out, err = run_cli(capsys, "study", "score", study.path, "--json", "--boot", "50",
                             "--csv", study.path / "answers.csv")
    assert code == 0, err
    printed = json.loads(out)
    assert printed["participants"] == 5 and set(printed["networks"]["A"]) >= {"identity", "person", "formula", "no_change"}
    assert json.loads((study.path / "score.json").read_text())["answers"] == 5 * len(study.items)
    rows = list(csv.DictReader(io.StringIO((study.path / "answers.csv").read_text())))
    assert len(rows) == 5 * len(study.items) * 2 and rows[0]["identity"] in {n["identity"] for n in study.networks.values()}
    assert {"participant", "phase", "item", "network", "identity", "operation", "attribute", "prediction",
            "confidence", "measured", "formula", "seconds"} <= set(rows[0])


def test_a_damaged_database_is_one_line(study, capsys):
    db = study.path / "study.sqlite"
    data = db.read_bytes()
    for damage in (b"not a database at all" * 100, data[:1000], b""):
        db.write_bytes(damage)
        for wal in study.path.glob("study.sqlite-*"):
            wal.unlink()
        code, _, err = run_cli(capsys, "study", "score", study.path)
        one_line(code, err, naming=str(db))
    conn = sqlite3.connect(db)
    conn.close()
    db.unlink()
    code, _, err = run_cli(capsys, "study", "invite", study.path, "-n", "2")
    one_line(code, err, naming="no study database")


# ---------------------------------------------------------------------------- over HTTP

@pytest.fixture
def client(study):
    return create_study_app(study, ADMIN, port=PORT).test_client()


def test_the_api_serves_only_a_participants_own_items(study, client):
    token = study.invite(1)[0]
    api = f"/p/{token}/api"
    assert client.get(f"/p/{token}/", **BASE).status_code == 200
    assert client.get("/p/nobody-at-all-here/", **BASE).status_code == 404
    assert client.get(f"{api}/item", **BASE).status_code == 409                   # consent first
    assert client.post(f"{api}/consent", json={}, **BASE).json == {"consented": True}
    item = client.get(f"{api}/item", **BASE).json
    assert set(item) >= {"item", "phase", "card", "attributes", "size_levels"} and "measured" not in item
    bad = [client.post(f"{api}/answer", data="[" * 100 + "]" * 100, content_type="application/json", **BASE),
           client.post(f"{api}/answer", json={"item": item["item"], "predictions": {}}, **BASE),
           client.post(f"{api}/answer", data="x" * 70_000, content_type="application/json", **BASE),
           client.post(f"{api}/answer", data="{}", content_type="text/plain", **BASE),
           client.get("/admin/wrong/api/score", **BASE),
           client.post("/api/join", json={}, **BASE)]
    assert [r.status_code for r in bad] == [400, 400, 413, 415, 403, 404]
    assert all(r.json["error"] and "\n" not in r.json["error"] for r in bad)
    answer = {"item": item["item"], "predictions": {a: {"direction": 0, "size": 0} for a in item["attributes"]}}
    assert client.post(f"{api}/answer", json=answer, **BASE).status_code == 200
    assert client.post(f"{api}/answer", json=answer, **BASE).status_code == 409
    score = client.get(f"/admin/{ADMIN}/api/score?boot=20", **BASE)
    assert score.status_code == 200 and score.json["answers"] == 1
    assert client.get(f"/admin/{ADMIN}/api/answers.csv", **BASE).data.decode().count("\n") == 1 + 2


# ---------------------------------------------------------------------------- a real server, killed

def http(url: str, body=None) -> tuple[int, dict]:
    import urllib.error
    import urllib.request
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {},
                                     method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def serve(study_path: Path):
    """``hpnet study serve`` in a real process on a free port: (process, base URL, its printed lines)."""
    from clihelp import hpnet_process
    proc = hpnet_process("study", "serve", study_path, "--port", "0")
    lines = [proc.stdout.readline() for _ in range(3)]
    assert lines[0].startswith("serving the study"), (lines, proc.stderr.read() if proc.poll() is not None else "")
    base = lines[0].split(" at ")[1].split("/ ")[0]
    return proc, base, lines


def test_a_killed_server_keeps_every_answer_and_each_participant_continues(study):
    import signal
    tokens = study.invite(3)
    proc, base, lines = serve(study.path)
    assert "/admin/" in lines[1] and "hpnet study invite" in lines[2]
    answered = {}
    try:
        for i, token in enumerate(tokens):
            assert http(f"{base}/p/{token}/api/consent", {})[0] == 200
            for _ in range(i + 1):                                   # 1, 2 and 3 answers
                code, item = http(f"{base}/p/{token}/api/item")
                assert code == 200
                body = {"item": item["item"], "predictions": {a: {"direction": -1, "size": 3} for a in item["attributes"]}}
                assert http(f"{base}/p/{token}/api/answer", body)[0] == 200
                answered.setdefault(token, []).append(item["item"])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    proc, base, _ = serve(study.path)
    try:
        for i, token in enumerate(tokens):
            code, item = http(f"{base}/p/{token}/api/item")
            assert code == 200 and item["position"] == i + 2                       # the next item
            code, error = http(f"{base}/p/{token}/api/answer", {"item": answered[token][-1], "predictions": {}})
            assert code == 409 and "answered already" in error["error"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    conn = study.connect()
    assert conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 6
    conn.close()


def test_serving_beyond_this_machine_needs_allow_host(study, capsys):
    code, _, err = run_cli(capsys, "study", "serve", study.path, "--host", "0.0.0.0", "--port", "0")
    one_line(code, err, naming="--allow-host 0.0.0.0")


def test_the_report_of_a_study_renders_its_score(study, capsys):
    code, _, err = run_cli(capsys, "report", study.path)
    assert code == 0 and "hpnet study score" in (study.path / "report.html").read_text()
    for i, token in enumerate(study.invite(3)):
        answer_all(study, token, lambda item, s=i - 1: s if not study.items[item["item"]]["is_check"] else 0)
    assert run_cli(capsys, "study", "score", study.path, "--boot", "50")[0] == 0
    code, _, err = run_cli(capsys, "report", study.path)
    html = (study.path / "report.html").read_text()
    assert code == 0 and html.count("<img") == 2 and "A minus B" in html and "no change" in html


KEYS = ["item", "predictions", "confidence", "direction", "size", "A", "B", "Smiling", "Male", "x"]
BODIES = st.recursive(st.none() | st.booleans() | st.integers(-3, 9) | st.floats(allow_nan=True, allow_infinity=True) |
                      st.sampled_from(["", "A", "i00000000", "Smiling", "x" * 300]),
                      lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
                      max_leaves=10)


@settings(max_examples=int(os.environ.get("HPNET_FUZZ_EXAMPLES", "40")), deadline=None, derandomize=True,
          database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, path=st.sampled_from(["consent", "answer", "rating", "current answer"]))
def test_generated_bodies_never_get_a_500(made, body, path):
    study = Study(made)
    client = create_study_app(study, ADMIN, port=PORT).test_client()
    token = study.invite(1)[0]
    client.post(f"/p/{token}/api/consent", json={}, **BASE)
    if path == "current answer" and isinstance(body, dict):
        body = {**body, "item": client.get(f"/p/{token}/api/item", **BASE).json["item"]}
    response = client.post(f"/p/{token}/api/{path.split()[-1]}", data=json.dumps(body), content_type="application/json",
                           **BASE)
    assert response.status_code < 500, (path, body, response.json)
    if response.status_code >= 400:
        assert response.json["error"] and "\n" not in response.json["error"]


def test_the_share_of_measurable_changes_per_network(made):
    study = Study(made)
    for label, share in study.measurable().items():
        changes = [m for i in study.items.values() if i["network"] == label and not i["is_check"] for m in i["measured"]]
        assert len(changes) == 3 * 2 and share == sum(abs(m) >= 0.1 for m in changes) / len(changes)
