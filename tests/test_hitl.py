"""``hpnet serve``: the workbench, the trial log and its score, the API and its safety, a killed server."""
from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hpnet.cli import main
from hpnet.commands import report_run, train_run
from hpnet.commands.serve import hitl_score_run
from hpnet.data import DataSpec
from hpnet.errors import HPNetError
from hpnet.hitl import Workbench
from hpnet.hitl.app import create_app
from hpnet.predictability import predict_pruning, predict_transform
from hpnet.predictability.human import (
    append_trial,
    direction_agreement,
    read_trials,
    score_is_current,
    score_log,
    score_trial_log,
    trial_bootstrap,
)
from hpnet.results import TrialScoreResult
from hpnet.run import Run
from hpnet.train import TrainConfig

NAMES = ["Smiling", "Male", "Eyeglasses"]
TINY = {"backbone": "strided", "widths": (4, 6, 8)}
PORT = 8123
BASE = {"base_url": f"http://127.0.0.1:{PORT}"}
IMAGES = 32


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hitl") / "run"
    spec = DataSpec(dataset="synthetic", image_size=16, max_images=256, attributes=NAMES)
    train_run(out, spec, dict(TINY), TrainConfig(epochs=1, batch_size=32), progress=False)
    train_run(out / "plain", spec, {**TINY, "head": "linear"}, TrainConfig(epochs=1, batch_size=32), progress=False)
    return out


@pytest.fixture(scope="module")
def bench(run) -> Workbench:
    return Workbench.from_run(run, images=IMAGES)


@pytest.fixture
def client(bench, tmp_path):
    app = create_app(bench, port=PORT, log=tmp_path / "trials.jsonl", n_boot=100)
    return app.test_client()


def first_images(run: Path, n: int = IMAGES):
    r = Run.open(run)
    _, data = r.eval_data(progress=False)
    x = data.images[:n].float() / 255
    return x, data.targets[:n]


# ---------------------------------------------------------------------------- the workbench


def test_apply_measures_what_the_library_computes(run, client):
    body = {"off": [1, 3], "tone": {"all": {"n": 2.0, "beta": 0.3}, "Male": {"n": 0.5, "beta": 0.0}}}
    got = client.post("/api/apply", json=body, **BASE).json
    model = Run.open(run).model()
    x, y = first_images(run)
    with torch.no_grad():
        before = model(x).logits.double()
        keep = torch.ones(8)
        keep[[1, 3]] = 0
        model.set_channel_keep(keep)
        model.set_transform(torch.tensor([2.0, 0.5, 2.0]), torch.tensor([0.3, 0.0, 0.3]))
        after = model(x).logits.double()
    change = ((after - before) / before.std(0)).mean(0)
    acc = ((after > 0).double() == y.double()).double().mean(0)
    flips = ((after > 0) != (before > 0)).sum(0)
    for k, row in enumerate(got["measured"]):
        assert row["attribute"] == NAMES[k]
        assert row["logit_change"] == pytest.approx(float(change[k]), abs=1e-6)
        assert row["accuracy_after"] == pytest.approx(float(acc[k]), abs=1e-9)
        assert row["flipped"] == int(flips[k])
    assert got["perturbation"] == {"network": "attention", "off": [1, 3], "n": [2.0, 0.5, 2.0],
                                   "beta": [0.3, 0.0, 0.3]}
    assert sum(r["flipped"] for r in got["measured"]) == len(got["flipped_images"])


def test_plain_network_pruning_is_measured_too(run, client):
    got = client.post("/api/apply", json={"network": "plain", "off": [0, 5]}, **BASE).json
    model = Run.open(run / "plain").model()
    x, _ = first_images(run)
    with torch.no_grad():
        before = model(x).logits.double()
        keep = torch.ones(8)
        keep[[0, 5]] = 0
        model.set_channel_keep(keep)
        after = model(x).logits.double()
    change = ((after - before) / before.std(0)).mean(0)
    assert [r["logit_change"] for r in got["measured"]] == pytest.approx(change.tolist(), abs=1e-6)


def test_nothing_switched_off_changes_nothing(client):
    got = client.post("/api/apply", json={}, **BASE).json
    assert all(r["logit_change"] == 0 and r["flipped"] == 0 and r["accuracy_change"] == 0 for r in got["measured"])
    assert all(r["change"] == 0 and r["size"] == 0 for r in got["predicted"])


def test_formula_is_the_human_side_predictor_of_the_score(bench):
    net = bench.main
    w, masks = net.usage["weights"], net.usage["mean_masks"]
    tone = bench.predict(bench.perturbation({"tone": {"all": {"n": 4.0, "beta": 0.5}}}))
    assert [r["change"] for r in tone] == pytest.approx(predict_transform(w, masks, [(4.0, 0.5)])[0].tolist(), abs=1e-9)
    pruned = bench.predict(bench.perturbation({"off": [2, 6]}))
    share = predict_pruning(masks * w.abs(), [{"channels": [2, 6]}])[0]
    assert [r["size"] for r in pruned] == pytest.approx(share.tolist(), abs=1e-9)
    signed = -(w * masks)[:, [2, 6]].sum(1) / (w.abs() * masks).sum(1)
    assert [r["change"] for r in pruned] == pytest.approx(signed.tolist(), abs=1e-9)
    plain = bench.networks["plain"]
    evidence = plain.usage["weights"].abs() * plain.usage["activation"].view(1, -1)
    got = bench.predict(bench.perturbation({"network": "plain", "off": [4]}))
    assert [r["size"] for r in got] == pytest.approx(predict_pruning(evidence, [{"channels": [4]}])[0].tolist())


def test_the_normalised_form_round_trips(bench):
    p = bench.perturbation({"off": [5, 1], "tone": {"all": {"n": 4, "beta": 0.5}, "Male": {"n": 0.5}}})
    assert bench.perturbation(p.to_json()) == p
    q = bench.perturbation({"network": "plain", "off": [2]})
    assert bench.perturbation(q.to_json()) == q
    with pytest.raises(HPNetError, match="n must list one number per attribute"):
        bench.perturbation({"n": [1.0]})
    with pytest.raises(HPNetError, match="no attention masks"):
        bench.perturbation({"network": "plain", "beta": [0.5, 0.0, 0.0]})


def test_channel_choices_resolve_to_ids(bench):
    assert list(bench.perturbation({"off": {"semantic_first": 3}}).off) == sorted(bench.semantic_order[:3])
    top = bench.top_channels(1, 2)
    assert list(bench.perturbation({"off": {"top_of": "Male", "count": 2}}).off) == sorted(top)
    evidence = bench.main.evidence()[1]
    assert evidence[top[0]] >= evidence[top[1]] >= evidence.sort(descending=True).values[2]


def test_export_is_a_run_every_command_accepts(run, client, bench):
    body = {"perturbation": {"off": [0, 7], "tone": {"Smiling": {"n": 2.0, "beta": 0.1}}}, "name": "smaller"}
    got = client.post("/api/export", json=body, **BASE)
    assert got.status_code == 200 and got.json["path"] == "hitl/exports/smaller" and got.json["channels"] == 6
    exported = Run.open(run / "hitl" / "exports" / "smaller")
    model = exported.model()
    assert model.config.channels == 6 and exported.record["kept_channels"] == [1, 2, 3, 4, 5, 6]
    x, y = first_images(run)
    with torch.no_grad():
        acc = ((model(x).logits > 0).double() == y.double()).double().mean(0)
    measured = client.post("/api/apply", json=body["perturbation"], **BASE).json["measured"]
    assert [r["accuracy_after"] for r in measured] == pytest.approx(acc.tolist(), abs=1e-9)
    assert main(["eval", str(exported.path), "--max-images", "16"]) == 0
    again = client.post("/api/export", json=body, **BASE)
    assert again.status_code == 409 and "exists already" in again.json["error"]


# ---------------------------------------------------------------------------- the API


def test_every_read_endpoint(client, bench):
    model = client.get("/api/model", **BASE).json
    assert model["attributes"] == NAMES and model["networks"] == ["attention", "plain"] and model["channels"] == 8
    assert np.asarray(model["grid"]).shape == (3, 8) and model["images"] == IMAGES
    assert sorted(model["semantic_order"]) == list(range(8))
    assert model["accuracy"]["attention"] == pytest.approx(bench.base_correct["attention"].tolist())
    attr = client.get("/api/attribute/Male", **BASE).json
    assert attr["index"] == 1 and len(attr["samples"]) == 6 and len(attr["maps"]) == 4
    maps = np.asarray(attr["maps"][str(attr["top_channels"][0]["channel"])])
    assert maps.shape == (6, 4, 4) and attr["map_size"] == [4, 4] and (maps > 0).all() and (maps < 1).all()
    ch = client.get("/api/channel/3", **BASE).json
    r = bench.correlation[3].clone()
    r[3] = 0
    assert ch["partners"][0]["channel"] == int(r.abs().argmax()) and len(ch["partners"]) == 5
    corr = client.get("/api/correlation", **BASE).json["matrix"]
    assert np.allclose(np.diag(corr), 1.0)
    png = client.get("/api/image/5.png", **BASE)
    assert png.mimetype == "image/png"
    assert np.array_equal(np.asarray(Image.open(BytesIO(png.data))), bench.images[5].permute(1, 2, 0).numpy())
    predicted = client.post("/api/predict", json={"off": [2]}, **BASE).json
    assert [p["attribute"] for p in predicted["predicted"]] == NAMES
    assert client.get("/api/score", **BASE).json["trials"] == 0


BAD = [
    ("post", "/api/apply", {"off": [99]}, 400, "channel must be an id in 0..7"),
    ("post", "/api/apply", {"off": [1, 1]}, 400, "listed twice"),
    ("post", "/api/apply", {"off": "3"}, 400, "off must be a list"),
    ("post", "/api/apply", {"off": {"semantic_first": 9}}, 400, "semantic_first must be a count in 0..8"),
    ("post", "/api/apply", {"off": {"top_of": "Beard"}}, 400, "unknown attribute \"Beard\""),
    ("post", "/api/apply", {"tone": {"all": {"n": 0}}}, 400, "n must be a number in [0.1, 10], got 0"),
    ("post", "/api/apply", {"tone": {"all": {"n": -1}}}, 400, "n must be a number"),
    ("post", "/api/apply", {"tone": {"Male": {"beta": 1.5}}}, 400, "beta must be a number in [0, 1]"),
    ("post", "/api/apply", {"tone": {"Nose": {"n": 2}}}, 400, "unknown attribute \"Nose\""),
    ("post", "/api/apply", {"network": "plain", "tone": {"all": {"n": 2}}}, 400, "no attention masks"),
    ("post", "/api/apply", {"network": "vgg"}, 400, "network must be one of attention, plain"),
    ("post", "/api/apply", {"pruned": [1]}, 400, "unknown key 'pruned'"),
    ("post", "/api/apply", {"beta": [0, 0, 2]}, 400, "beta must be a number in [0, 1], got 2"),
    ("post", "/api/apply", [1, 2], 400, "must be a JSON object"),
    ("post", "/api/predict", {"tone": {"all": {"n": True}}}, 400, "n must be a number"),
    ("post", "/api/trial", {"mode": "guess"}, 400, "mode must be one of random, own"),
    ("post", "/api/trial", {"network": "resnet"}, 400, "network must be one of attention, plain, blind"),
    ("post", "/api/trial", {"mode": "own"}, 400, "needs a \"perturbation\""),
    ("post", "/api/trial/abc/commit", {"predictions": {}}, 404, "no trial \"abc\""),
    ("post", "/api/export", {"perturbation": {}, "name": "../up"}, 400, "name must be"),
    ("post", "/api/export", {"perturbation": {}, "name": ".hidden"}, 400, "name must be"),
    ("post", "/api/export", {"perturbation": {"off": list(range(8))}, "name": "none"}, 400, "keep at least one"),
    ("get", "/api/attribute/Beard", None, 400, "unknown attribute \"Beard\""),
    ("get", "/api/channel/8", None, 400, "channel must be an id in 0..7, got 8"),
    ("get", "/api/image/32.png", None, 404, "no image 32"),
    ("get", "/api/nothing", None, 404, "no such page or API"),
    ("delete", "/api/apply", None, 405, "method"),
]


@pytest.mark.parametrize("method,path,body,code,message", BAD, ids=[f"{m} {p} {b}" for m, p, b, _, _ in BAD])
def test_bad_requests_get_a_one_line_json_error(client, method, path, body, code, message):
    response = getattr(client, method)(path, json=body, **BASE) if body is not None else \
        getattr(client, method)(path, **BASE)
    assert response.status_code == code
    error = response.json["error"]
    assert message.lower() in error.lower() and "\n" not in error and "Traceback" not in error


def test_malformed_and_oversized_bodies(client):
    cases = [(dict(data="{\"off\": [1,", content_type="application/json"), 400, "not valid JSON"),
             (dict(data="off=1", content_type="application/x-www-form-urlencoded"), 415, "must be JSON"),
             (dict(data="{}", content_type="text/plain"), 415, "must be JSON"),
             (dict(data="{\"off\": [" + "1," * 600000 + "1]}", content_type="application/json"), 413, "")]
    for kwargs, code, message in cases:
        response = client.post("/api/apply", **kwargs, **BASE)
        assert response.status_code == code and message in response.json["error"]


def test_commit_checks_the_prediction(client):
    trial = client.post("/api/trial", json={"mode": "random"}, **BASE).json
    shown = trial["attributes"]
    good = {a: {"direction": 1, "size": 2} for a in shown}
    cases = [({"predictions": {shown[0]: {"direction": 1, "size": 1}}}, "is missing"),
             ({"predictions": {**good, "Beard": {"direction": 1, "size": 1}}}, "was not shown"),
             ({"predictions": {**good, shown[0]: {"direction": 2, "size": 1}}}, "direction must be -1, 0 or 1"),
             ({"predictions": {**good, shown[0]: {"direction": 1, "size": 4}}}, "size must be 0..3"),
             ({"predictions": {**good, shown[0]: {"direction": 0, "size": 2}}}, "\"no change\" goes with size none"),
             ({"predictions": good, "confidence": 1.5}, "confidence must be a number in [0, 1]"),
             ({"predictions": "up"}, "must be a JSON object")]
    for body, message in cases:
        response = client.post(f"/api/trial/{trial['trial']}/commit", json=body, **BASE)
        assert response.status_code == 400 and message in response.json["error"], body
    assert client.post(f"/api/trial/{trial['trial']}/commit", json={"predictions": good}, **BASE).status_code == 200
    twice = client.post(f"/api/trial/{trial['trial']}/commit", json={"predictions": good}, **BASE)
    assert twice.status_code == 404


@pytest.mark.parametrize("path", ["/static/../run.json", "/static/..%2frun.json", "/static/%2e%2e/%2e%2e/etc/passwd",
                                  "/static/..%5c..%5crun.json", "/api/image/..%2f..%2frun.json",
                                  "/api/attribute/..%2f..%2frun.json", "//etc/passwd", "/static//etc/passwd",
                                  "/../../run.json"])
def test_no_file_outside_the_page_is_served(client, path):
    response = client.get(path, **BASE)
    if response.status_code == 308:                           # "//" merged into "/": then not found
        assert response.location.startswith(("/", f"http://127.0.0.1:{PORT}/"))
        response = client.get(path, follow_redirects=True, **BASE)
    assert response.status_code in (400, 404)
    assert b"attribute_names" not in response.data and b"root:" not in response.data


def test_only_the_bound_host_and_same_origin_writes(client):
    assert client.get("/api/model", base_url=f"http://evil.example:{PORT}").status_code == 403
    assert client.get("/api/model", base_url="http://127.0.0.1:9999").status_code == 403
    for host in (f"127.0.0.1:{PORT}", f"localhost:{PORT}"):
        assert client.get("/api/model", base_url=f"http://{host}").status_code == 200
    refused = client.post("/api/apply", json={}, headers={"Origin": "http://evil.example"}, **BASE)
    assert refused.status_code == 403 and "origin" in refused.json["error"]
    assert client.post("/api/apply", json={}, headers={"Sec-Fetch-Site": "cross-site"}, **BASE).status_code == 403
    assert client.post("/api/apply", json={}, headers={"Origin": f"http://127.0.0.1:{PORT}"}, **BASE).status_code == 200


def test_concurrent_requests_give_the_serial_answers(client):
    bodies = [{"off": [c]} for c in range(8)] + [{"tone": {"all": {"n": n, "beta": 0.2}}} for n in (0.5, 2, 4)]
    serial = [client.post("/api/apply", json=b, **BASE).json["measured"] for b in bodies]
    results = [None] * len(bodies) * 3

    def ask(i):
        results[i] = client.post("/api/apply", json=bodies[i % len(bodies)], **BASE).json["measured"]
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == serial * 3


# ---------------------------------------------------------------------------- trials and their score


def commit_all(client, network: str, direction: int = -1, size: int = 2, mode: str = "random", body=None) -> dict:
    trial = client.post("/api/trial", json={"mode": mode, "network": network, **(body or {})}, **BASE).json
    preds = {a: {"direction": direction, "size": size if direction else 0} for a in trial["attributes"]}
    return trial, client.post(f"/api/trial/{trial['trial']}/commit", json={"predictions": preds, "confidence": 0.7},
                              **BASE).json


def test_trials_are_logged_and_scored(client, tmp_path):
    log = tmp_path / "trials.jsonl"
    blind, answer = commit_all(client, "blind")
    assert blind["network"] == "hidden" and blind["perturbation"]["network"] == "hidden"
    assert answer["network"] in ("attention", "plain")
    commit_all(client, "attention", 1, 1)
    own, answer = commit_all(client, "attention", 0, mode="own", body={"perturbation": {"off": [2, 4]}})
    assert own["description"] == "switch off channels 2, 4"
    trials, warnings = read_trials(log)
    assert len(trials) == 3 and not warnings
    last = trials[-1]
    assert last["person"] == [0] * len(last["attributes"]) and last["confidence"] == 0.7
    assert last["perturbation"]["off"] == [2, 4] and last["source"] == "own"
    assert last["measured"] == pytest.approx([m["logit_change"] for m in answer["measured"]])
    score = client.get("/api/score", **BASE).json
    assert score["trials"] == 3 and set(score["by_network"]) <= {"attention", "plain"}
    expected = score_log(log, n_boot=100)
    assert score["formula"]["score"] == pytest.approx(expected["formula"]["score"])
    assert score["no_change"]["score"] == 0.0


def test_a_blind_trial_only_switches_channels_off(client):
    refused = client.post("/api/trial", json={"mode": "own", "network": "blind",
                                               "perturbation": {"tone": {"all": {"n": 2}}}}, **BASE)
    assert refused.status_code == 400
    for _ in range(10):
        trial = client.post("/api/trial", json={"network": "blind"}, **BASE).json
        assert trial["perturbation"]["n"] == [1.0] * 3 and trial["perturbation"]["off"]


def test_a_cut_last_line_is_skipped_with_a_warning(client, tmp_path):
    log = tmp_path / "trials.jsonl"
    commit_all(client, "attention")
    with open(log, "ab") as f:
        f.write(b'{"trial": "cut", "network": "att')          # a server killed mid-write
    score = client.get("/api/score", **BASE).json
    assert score["trials"] == 1 and "line 2 skipped (the last line, cut short" in score["warnings"][0]
    commit_all(client, "attention")                           # the next trial starts on its own line
    trials, warnings = read_trials(log)
    assert len(trials) == 2 and len(warnings) == 1 and "not a trial" in warnings[0]
    assert client.get("/", **BASE).status_code in (200, 404)  # the page itself never fails on the log


def test_rank_score_over_trials_known_values():
    measured = [np.array([0.1, -0.5, 2.0]), np.array([0.0, 1.0]), np.array([-1.0, 0.3, 0.2])]
    perfect = trial_bootstrap(measured, measured, n_boot=200)
    assert perfect["score"] == 1.0 and perfect["ci_low"] == 1.0 and perfect["n"] == 8
    backwards = trial_bootstrap([-m for m in measured], measured, n_boot=200)
    assert backwards["score"] == -1.0
    constant = trial_bootstrap([np.zeros(len(m)) for m in measured], measured, n_boot=200)
    assert constant == {"score": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n": 8}
    noisy = trial_bootstrap([m + np.array([0.5, -0.5, 0.0][:len(m)]) for m in measured], measured, n_boot=500)
    assert noisy["ci_low"] <= noisy["score"] <= noisy["ci_high"] and noisy["ci_low"] < 1
    # directions: measured |m| < 0.1 is "no change"
    assert direction_agreement([np.array([1, 0, -1])], [np.array([0.5, 0.05, 0.2])]) == pytest.approx(2 / 3)


def test_append_closes_a_cut_line_and_fsyncs(tmp_path, monkeypatch):
    log = tmp_path / "t.jsonl"
    log.write_bytes(b'{"half')
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    trial = {"attributes": ["a"], "person": [1], "formula": [0.2], "measured": [0.3], "network": "attention"}
    append_trial(log, trial)
    assert synced and log.read_bytes().split(b"\n")[1] == json.dumps(trial, separators=(",", ":")).encode()


TRIALS = [{"attributes": NAMES, "person": [1, -2, 0], "formula": [0.2, -0.1, 0.0], "measured": [0.5, -0.4, 0.01],
           "network": "attention"},
          {"attributes": NAMES[:2], "person": [3, 1], "formula": [0.3, 0.05], "measured": [1.2, -0.2],
           "network": "plain"},
          {"attributes": NAMES, "person": [-1, 0, 2], "formula": [-0.1, 0.0, 0.1], "measured": [-0.3, 0.2, 0.8],
           "network": "attention"}]


def test_the_score_result_round_trips_through_the_run_folder(tmp_path):
    log = tmp_path / "hitl" / "trials.jsonl"
    for trial in TRIALS:
        append_trial(log, trial)
    with open(log, "ab") as f:
        f.write(b"not a trial\n")
    result = score_trial_log(log, n_boot=50, seed=3)
    assert isinstance(result, TrialScoreResult) and result.file_name == "hitl/score.json"
    assert (result.trials, result.pairs, result.n_boot, result.seed, result.level) == (3, 8, 50, 3, 0.95)
    assert set(result.by_network) == {"attention", "plain"} and result.by_network["plain"]["trials"] == 1
    assert len(result.warnings) == 1 and "line 4 skipped" in result.warnings[0]
    raw = log.read_bytes()
    assert result.log["file"] == "trials.jsonl" and result.log["bytes"] == len(raw)
    assert result.log["sha256"] == hashlib.sha256(raw).hexdigest() and result.log["modified"].endswith("+00:00")
    expected = score_log(log, n_boot=50, seed=3)           # the page's dict: the same numbers
    assert {k: getattr(result, k) for k in ("person", "formula", "no_change", "by_network")} == \
        {k: expected[k] for k in ("person", "formula", "no_change", "by_network")}
    path = Run(tmp_path, {}).write(result)
    assert path == tmp_path / "hitl" / "score.json" and not list(path.parent.glob(".*.tmp"))
    stored = json.loads(path.read_text())
    assert stored == result.to_json() and set(stored) == {"trials", "pairs", "person", "formula", "no_change",
                                                          "log", "by_network", "warnings", "n_boot", "seed", "level"}
    assert set(stored["person"]) == {"score", "ci_low", "ci_high", "n", "direction_agreement"}
    read = Run(tmp_path, {}).read(TrialScoreResult)
    assert read == TrialScoreResult.from_json(stored) and read.to_json() == result.to_json()
    assert math.isnan(result.by_network["plain"]["person"]["score"])     # 2 pairs: no score, null in the file
    assert read.by_network["plain"]["person"]["score"] is None and read.person == result.person
    few = score_trial_log(tmp_path / "none.jsonl", n_boot=10)   # no trials: NaN scores are written as null
    assert few.trials == 0 and math.isnan(few.person["score"]) and few.to_json()["person"]["score"] is None
    assert few.log["bytes"] == 0 and few.log["modified"] is None
    with pytest.raises(HPNetError, match=r"score\.json: not a trial score result: log is"):
        TrialScoreResult.from_json({**stored, "log": str(log)}, str(path))      # the old layout: "log" a path


def test_a_score_is_stale_once_the_log_changes(tmp_path):
    log = tmp_path / "trials.jsonl"
    for trial in TRIALS[:2]:
        append_trial(log, trial)
    result = score_trial_log(log, n_boot=20)
    assert score_is_current(result, log)
    original = log.read_bytes()
    os.utime(log, (1, 1))                                      # a copied log: its time alone changes nothing
    assert score_is_current(result, log)
    append_trial(log, TRIALS[2])
    assert not score_is_current(result, log)
    log.write_bytes(original.replace(b"0.5", b"0.6"))          # the same size, other content
    assert log.stat().st_size == result.log["bytes"] and not score_is_current(result, log)
    log.write_bytes(original)
    assert score_is_current(result, log)
    log.unlink()
    assert not score_is_current(result, log)
    assert score_is_current(score_trial_log(log, n_boot=10), log)   # a missing log scored stays current


def test_hitl_score_command(run, client, capsys):
    log = run / "hitl" / "trials.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    assert main(["hitl-score", str(run)]) == 0
    for _ in range(2):
        trial = {"attributes": NAMES, "person": [1, -2, 0], "formula": [0.2, -0.1, 0.0], "measured": [0.5, -0.4, 0.01],
                 "network": "attention"}
        append_trial(log, trial)
    capsys.readouterr()
    assert main(["hitl-score", str(run), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["trials"] == 2 and printed["person"]["score"] == 1.0
    assert {"person", "formula", "no_change"} <= set(printed) and {"score", "ci_low", "ci_high"} <= set(printed["formula"])
    assert printed["log"]["bytes"] == log.stat().st_size and printed["n_boot"] == 1000
    written = Run.open(run).read(TrialScoreResult)
    assert written.trials == 2 and written.to_json() == printed and score_is_current(written, log)
    result = hitl_score_run(run, n_boot=50)
    assert isinstance(result, TrialScoreResult) and result.no_change["score"] == 0.0
    assert Run.open(run).read(TrialScoreResult).to_json() == result.to_json() and result.n_boot == 50
    page = report_run(run).read_text()
    section = page[page.index('<section id="hitl"'):]
    assert "2 trials, 6 predictions" in section and "<td>person</td><td>1.000" in section
    log.unlink()
    assert main(["hitl-score", str(run)]) == 2
    assert "no trials yet" in capsys.readouterr().err


def test_a_baseline_of_another_width_is_refused(tmp_path):
    out = tmp_path / "run"
    spec = DataSpec(dataset="synthetic", image_size=16, max_images=64, attributes=NAMES)
    train_run(out, spec, dict(TINY), TrainConfig(epochs=1, batch_size=32), progress=False)
    train_run(out / "plain", spec, {"backbone": "strided", "widths": (4, 6, 6), "head": "linear"},
              TrainConfig(epochs=1, batch_size=32), progress=False)
    with pytest.raises(HPNetError, match="the baseline has 6 feature channels, the run 8"):
        Workbench.from_run(out, images=8)


def test_serve_refuses_bad_arguments(run, capsys):
    for args, message in ((["serve", str(run), "--images", "0"], "--images must be a positive integer"),
                          (["serve", str(run), "--port", "70000"], "--port must be in 0..65535"),
                          (["serve", str(run.parent / "nope")], "run folder not found")):
        assert main(args) == 2
        assert message in capsys.readouterr().err


# ---------------------------------------------------------------------------- a killed server


def start_server(run: Path) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hpnet", "serve", str(run), "--port", "0", "--images", "16",
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    line = proc.stdout.readline()
    if "serving" not in line:
        proc.kill()
        raise AssertionError(f"the server did not start: {line}{proc.stdout.read()}")
    return proc, int(line.split("http://127.0.0.1:")[1].split("/")[0])


def post(port: int, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read())


def test_a_killed_server_keeps_every_committed_trial(run):
    log = run / "hitl" / "trials.jsonl"
    if log.exists():
        log.unlink()
    proc, port = start_server(run)
    committed = []
    try:
        for _ in range(3):
            trial = post(port, "/api/trial", {"mode": "random", "network": "blind"})
            preds = {a: {"direction": 1, "size": 1} for a in trial["attributes"]}
            post(port, f"/api/trial/{trial['trial']}/commit", {"predictions": preds, "confidence": 0.5})
            committed.append(trial["trial"])
        post(port, "/api/trial", {"mode": "random"})            # the trial in flight
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert [t["trial"] for t in read_trials(log)[0]] == committed
    proc, port = start_server(run)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/score", timeout=30) as response:
            assert json.loads(response.read())["trials"] == 3
        trial = post(port, "/api/trial", {"mode": "random"})
        post(port, f"/api/trial/{trial['trial']}/commit",
             {"predictions": {a: {"direction": 0, "size": 0} for a in trial["attributes"]}})
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert len(read_trials(log)[0]) == 4


# ---------------------------------------------------------------------------- generated requests

KEYS = ["network", "off", "tone", "n", "beta", "all", "Smiling", "Male", "semantic_first", "top_of", "count",
        "mode", "perturbation", "predictions", "direction", "size", "confidence", "name", "x"]
JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 12) | st.floats(-1e3, 1e3) |
                    st.sampled_from([float("nan"), float("inf"), 1e308, 0.1, 10.0]) |
                    st.sampled_from(["attention", "plain", "blind", "random", "own", "Smiling", "", "..", "x" * 70]),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
                    max_leaves=12)


@pytest.fixture(scope="module")
def fuzz_client(run, tmp_path_factory):
    import shutil
    copy = tmp_path_factory.mktemp("fuzz") / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("hitl"))
    app = create_app(Workbench.from_run(copy, images=16), port=PORT, n_boot=20)
    return app.test_client()


@settings(max_examples=int(os.environ.get("HPNET_FUZZ_EXAMPLES", "40")), deadline=None, derandomize=True,
          database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=JSON, path=st.sampled_from(["/api/apply", "/api/predict", "/api/trial", "/api/export", "commit"]))
def test_generated_requests_never_get_a_500(fuzz_client, body, path):
    if path == "commit":
        trial = fuzz_client.post("/api/trial", json={"mode": "random"}, **BASE).json["trial"]
        path = f"/api/trial/{trial}/commit"
    response = fuzz_client.post(path, json=body, **BASE)
    assert response.status_code < 500, (path, body, response.json)
    if response.status_code >= 400:
        error = response.json["error"]
        assert error and "\n" not in error and "Traceback" not in error


def test_the_demo_ends_with_the_serve_command_and_it_loads(tmp_path, capsys):
    from hpnet.commands import demo
    out = tmp_path / "demo"
    demo(out, images=64, image_size=16, epochs=1, progress=False)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"hpnet serve {out}" in last and "http://127.0.0.1:8000/" in last
    bench = Workbench.from_run(out, images=16)                  # what that command loads
    assert list(bench.networks) == ["attention", "plain"] and bench.channels == 64
