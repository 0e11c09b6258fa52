"""``hpnet serve``: the workbench, the trial log and its score, the API and its safety, a killed server."""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
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

from dissecthelp import every_channel_named
from extra_operation import flip_registered
from hpnet.cli import main
from hpnet.commands import report_run, train_run
from hpnet.commands.serve import hitl_score_run
from hpnet.data import DataSpec
from hpnet.errors import HPNetError
from hpnet.hitl import TrialDesk, Workbench
from hpnet.hitl.app import create_app
from hpnet.core.tone import mask_transform
from hpnet.operations import OPERATIONS, measure_operations, per_std
from hpnet.predictability import human
from hpnet.predictability.human import (
    append_trial,
    direction_agreement,
    read_trials,
    score_is_current,
    score_log,
    score_trial_log,
    trial_bootstrap,
    trial_bootstraps,
)
from hpnet.results import TrialScoreResult, json_ready
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
    with every_channel_named():                 # so that the role operation applies (see dissecthelp)
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

ATT, PLAIN = "run (attention)", "run/plain (linear)"
CASES = [(name, which) for name in OPERATIONS.names() for which in (0, 1)]
CASE_IDS = [f"{name}-{'own' if which == 0 else 'baseline'}" for name, which in CASES]


def drawn(bench, name: str, which: int, seed: int = 0):
    """(network, op, params) of a case: the op drawn as the trials draw it, on the case's network."""
    net = list(bench.networks.values())[which]
    op = OPERATIONS.get(name)
    return net, op, (op.draw(np.random.default_rng(seed + 10 * which), net.view) if op.applies_to(net.view) else None)


def plain_json(obj):
    return json.loads(json.dumps(json_ready(obj)))


def test_networks_are_named_as_results_name_them(run, bench):
    assert list(bench.networks) == [ATT, PLAIN]
    assert Run.open(run).network_name(run.parent) == ATT and Run.open(run / "plain").network_name(run.parent) == PLAIN


@pytest.mark.parametrize("name,which", CASES, ids=CASE_IDS)
def test_every_operation_on_every_network(run, bench, client, name, which):
    """/api/apply answers with op.predict, op.card and the change measure_operations measures with
    op.heads; the perturbation's JSON reads back as itself; the export is op.persist."""
    net, op, params = drawn(bench, name, which)
    if params is None:                       # e.g. a tone curve on the plain CNN
        refused = client.post("/api/apply", json={"network": net.name, "operation": name}, **BASE)
        assert refused.status_code == 400 and "no masks" in refused.json["error"]
        return
    spec = {"network": net.name, **op.to_json(params)}
    got = client.post("/api/apply", json=spec, **BASE).json
    assert got["perturbation"] == plain_json(spec)
    p = bench.perturbation(got["perturbation"])
    assert p == bench.perturbation(spec) and p.steps[0].params == params and p.operation == name
    assert bench.perturbation(json.loads(json.dumps(p.to_json()))) == p
    prediction = op.predict(net.view, params)
    assert [r["change"] for r in got["predicted"]] == prediction.change.tolist()
    assert [r["size"] for r in got["predicted"]] == prediction.size.tolist()
    assert got["cards"] == [plain_json(op.card(net.view, params).to_json(NAMES))]
    assert client.post("/api/predict", json=spec, **BASE).json["predicted"] == got["predicted"]

    model = net.run.model()
    _, data = Run.open(run).eval_data(progress=False)
    m = measure_operations(model, data, [op.heads(model, params)], max_images=IMAGES)
    assert [r["logit_change"] for r in got["measured"]] == \
        pytest.approx(per_std(m["mean_change"][0], m["logit_std"]).tolist(), abs=1e-5)
    assert [r["abs_logit_change"] for r in got["measured"]] == \
        pytest.approx(per_std(m["abs_change"][0], m["logit_std"]).tolist(), abs=1e-5)
    assert [r["accuracy_after"] for r in got["measured"]] == pytest.approx(m["accuracy"][0].tolist(), abs=1e-9)

    folder = f"{name}-{which}"
    exported = client.post("/api/export", json={"perturbation": spec, "name": folder}, **BASE).json
    reloaded = Run.open(run / "hitl" / "exports" / folder)
    persisted = op.persist(model, params)
    kept = torch.nonzero(persisted.operation_state().keep != 0).flatten().tolist()
    assert exported["channels"] == len(kept) == reloaded.model().config.channels
    assert reloaded.record["kept_channels"] == kept and reloaded.record["perturbation"] == got["perturbation"]
    x, _ = first_images(run)
    with torch.no_grad():
        assert torch.allclose(reloaded.model()(x).logits, persisted(x).logits, atol=1e-5)


def hand_formula(net, state):
    """The evidence change of a keep-mask and tone curve as the page computed it before the registry:
    sum_c (keep_c w g_new(m) - w g_own(m)) / sum_c |w| g_own(m), and its size."""
    v = net.view
    w, m = v.weights, v.seen
    g = (lambda n, b: mask_transform(m, n.double().view(-1, 1), b.double().view(-1, 1))) if v.has_masks else \
        (lambda n, b: m)
    before = w * g(v.n, v.beta)
    after = state.keep.double().view(1, -1) * w * (g(state.n, state.beta) if v.has_masks else m)
    total = before.abs().sum(1)
    return (after - before).sum(1) / total, (after - before).abs().sum(1) / total


COMPOSITIONS = [      # (perturbation, whether every channel's evidence moves one way: then size = the net size)
    ({"off": [1, 3], "tone": {"all": {"n": 2.0, "beta": 0.3}, "Male": {"n": 0.5, "beta": 0.0}}}, True),
    ({"operations": [{"operation": "scale", "channels": [2, 6], "alpha": 0.5},
                     {"operation": "prune", "channels": [2, 5]}]}, True),
    ({"operations": [{"operation": "tone", "n": 4, "beta": 0.5}, {"operation": "scale", "channels": [0], "alpha": 2}]},
     False),
    ({"network": PLAIN, "operations": [{"operation": "scale", "channels": [1, 4], "alpha": 1.5},
                                       {"operation": "prune", "channels": [4]}]}, False),
]


@pytest.mark.parametrize("spec,one_way", COMPOSITIONS, ids=range(len(COMPOSITIONS)))
def test_a_composition_is_predicted_in_turn_and_measured_under_its_state(run, bench, client, spec, one_way):
    """The change predicted in turn is the net evidence change; the size is the evidence moved on the
    way (the sum of the steps' sizes): the net size when nothing moves back, at least it otherwise."""
    got = client.post("/api/apply", json=spec, **BASE).json
    p = bench.perturbation(spec)
    net = bench.networks[p.network]
    state = p.state(net.own)
    change, size = hand_formula(net, state)
    assert [r["change"] for r in got["predicted"]] == pytest.approx(change.tolist(), abs=1e-7)       # float32 state
    sizes = torch.tensor([r["size"] for r in got["predicted"]], dtype=torch.float64)
    assert sizes.tolist() == pytest.approx(size.tolist(), abs=1e-7) if one_way else bool((sizes >= size - 1e-7).all())
    assert len(got["cards"]) == len(p.steps) and bench.perturbation(got["perturbation"]) == p
    model = net.run.model()
    x, _ = first_images(run)
    with torch.no_grad():
        before = model(x).logits.double()
        model.set_operation_state(state)
        after = model(x).logits.double()
    assert [r["logit_change"] for r in got["measured"]] == \
        pytest.approx(((after - before) / before.std(0)).mean(0).tolist(), abs=1e-5)


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
    assert got["perturbation"] == {"network": ATT, "operations": [
        {"operation": "prune", "channels": [1, 3]},
        {"operation": "tone", "n": [2.0, 0.5, 2.0], "beta": [0.3, 0.0, 0.3]}]}
    assert sum(r["flipped"] for r in got["measured"]) == len(got["flipped_images"])


def test_nothing_switched_off_changes_nothing(client):
    for body in ({}, {"off": []}, {"operations": []}, {"network": PLAIN, "n": [1.0] * 3, "beta": [0.0] * 3}):
        got = client.post("/api/apply", json=body, **BASE).json
        assert got["perturbation"]["operations"] == [] and got["cards"] == []
        assert all(r["logit_change"] == 0 and r["flipped"] == 0 and r["accuracy_change"] == 0 for r in got["measured"])
        assert all(r["change"] == 0 and r["size"] == 0 for r in got["predicted"])


def test_the_normalised_form_round_trips(bench):
    p = bench.perturbation({"off": [5, 1], "tone": {"all": {"n": 4, "beta": 0.5}, "Male": {"n": 0.5}}})
    assert bench.perturbation(p.to_json()) == p and p.operation == "prune+tone"
    q = bench.perturbation({"network": PLAIN, "off": [2]})
    assert bench.perturbation(q.to_json()) == q
    assert q.to_json() == {"network": PLAIN, "operation": "prune", "channels": [2]}
    old = {"network": PLAIN, "off": [2], "n": [1.0] * 3, "beta": [0.0] * 3}       # a version-1 normalised form
    assert bench.perturbation(old) == q
    with pytest.raises(HPNetError, match="n must list one number per attribute"):
        bench.perturbation({"n": [1.0]})
    with pytest.raises(HPNetError, match="no attention masks"):
        bench.perturbation({"network": PLAIN, "beta": [0.5, 0.0, 0.0]})


def test_channel_choices_resolve_to_ids(bench):
    first = sorted(bench.semantic_order[:3])
    assert list(bench.perturbation({"off": {"semantic_first": 3}}).steps[0].params.channels) == first
    top = bench.top_channels(1, 2)
    assert list(bench.perturbation({"off": {"top_of": "Male", "count": 2}}).steps[0].params.channels) == sorted(top)
    evidence = bench.main.view.evidence().abs()[1]
    assert evidence[top[0]] >= evidence[top[1]] >= evidence.sort(descending=True).values[2]
    for name, op in OPERATIONS.items():              # every channel-set field takes the shortcuts
        for f in (f for f in op.fields if f.kind == "channels"):
            spec = {"operation": name, f.name: {"semantic_first": 3}}
            spec.update({g.name: g.default for g in op.fields if g.kind == "number"})
            assert list(getattr(bench.perturbation(spec).steps[0].params, f.name)) == first


def test_export_is_a_run_every_command_accepts(run, client, bench):
    body = {"perturbation": {"off": [0, 7], "tone": {"Smiling": {"n": 2.0, "beta": 0.1}}}, "name": "smaller"}
    got = client.post("/api/export", json=body, **BASE)
    assert got.status_code == 200 and got.json["path"] == "hitl/exports/smaller" and got.json["channels"] == 6
    exported = Run.open(run / "hitl" / "exports" / "smaller")
    model = exported.model()
    assert model.config.channels == 6 and exported.record["kept_channels"] == [1, 2, 3, 4, 5, 6]
    assert model.operation_state().n.tolist() == pytest.approx([2.0, 1.0, 1.0])
    x, y = first_images(run)
    with torch.no_grad():
        acc = ((model(x).logits > 0).double() == y.double()).double().mean(0)
    measured = client.post("/api/apply", json=body["perturbation"], **BASE).json["measured"]
    assert [r["accuracy_after"] for r in measured] == pytest.approx(acc.tolist(), abs=1e-9)
    assert main(["eval", str(exported.path), "--max-images", "16"]) == 0
    again = client.post("/api/export", json=body, **BASE)
    assert again.status_code == 409 and "exists already" in again.json["error"]
    scaled = {"perturbation": {"operations": [{"operation": "scale", "channels": [1, 2], "alpha": 0.5},
                                              {"operation": "prune", "channels": [2]}]}, "name": "scaled"}
    assert client.post("/api/export", json=scaled, **BASE).json["channels"] == 7
    kept = Run.open(run / "hitl" / "exports" / "scaled").model().operation_state().keep
    assert kept.tolist() == [1.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]       # the scale stays in the keep-mask


def test_racing_exports_of_one_name_land_exactly_one_whole_folder(run, bench, tmp_path):
    app = create_app(bench, port=PORT, log=tmp_path / "trials.jsonl", n_boot=100)
    answers, barrier = [None] * 6, threading.Barrier(6)

    def export(i: int) -> None:
        body = {"perturbation": {"off": [i]}, "name": "raced"}
        barrier.wait()
        answers[i] = app.test_client().post("/api/export", json=body, **BASE)
    threads = [threading.Thread(target=export, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 5, [a.json for a in answers]
    winner = next(i for i, a in enumerate(answers) if a.status_code == 200)
    exported = Run.open(run / "hitl" / "exports" / "raced")
    assert exported.record["kept_channels"] == [c for c in range(8) if c != winner]   # run.json and weights agree
    assert exported.model().config.channels == 7
    assert sorted(p.name for p in (run / "hitl" / "exports").iterdir() if p.name.startswith(".")) == []


# ---------------------------------------------------------------------------- the API


def test_every_read_endpoint(client, bench):
    model = client.get("/api/model", **BASE).json
    assert model["attributes"] == NAMES and model["networks"] == [ATT, PLAIN] and model["channels"] == 8
    assert np.asarray(model["grid"]).shape == (3, 8) and model["images"] == IMAGES
    assert sorted(model["semantic_order"]) == list(range(8))
    assert model["accuracy"][ATT] == pytest.approx(bench.base_correct[ATT].tolist())
    listed = {o["name"]: o for o in model["operations"]}
    assert list(listed) == OPERATIONS.names()
    for name, op in OPERATIONS.items():
        o = listed[name]
        words = ("title", "summary", "shown", "formula_text")
        assert [o[w] for w in words] == [getattr(op, w) for w in words]
        assert [f["name"] for f in o["fields"]] == [f.name for f in op.fields] and o["fields"][0]["kind"] in KINDS
        assert o["networks"] == [n for n, net in bench.networks.items() if op.applies_to(net.view)]
    attr = client.get("/api/attribute/Male", **BASE).json
    assert attr["index"] == 1 and len(attr["samples"]) == 6 and len(attr["maps"]) == 4
    maps = np.asarray(attr["maps"][str(attr["top_channels"][0]["channel"])])
    assert maps.shape == (6, 4, 4) and attr["map_size"] == [4, 4] and (maps > 0).all() and (maps < 1).all()
    ch = client.get("/api/channel/3", **BASE).json
    r = bench.correlation[3].clone()
    r[3] = 0
    assert ch["partners"][0]["channel"] == int(r.abs().argmax()) and len(ch["partners"]) == 5
    roles = bench.main.view.roles                                   # where each channel fires, when parts are known
    assert ch["role"] == (roles[3] if roles is not None else None)
    assert all(p["role"] == (roles[p["channel"]] if roles is not None else None) for p in ch["partners"])
    named = model["roles"]                                          # the grid's: each network's roles and IoU
    assert list(named) == [ATT, PLAIN] and named[ATT]["role"] == list(roles) and len(named[ATT]["iou"]) == 8
    assert ch["fires"]["best_part"] == roles[3] and ch["fires"]["iou"] == named[ATT]["iou"][3]   # all named here
    for kind in ("fires", "mask"):                                  # where it fires beside its mask, as PNG
        shown = client.get(f"/api/channel/3/{kind}/5.png?attribute=Male", **BASE)
        assert shown.mimetype == "image/png" and Image.open(BytesIO(shown.data)).size == (128, 128)
    corr = client.get("/api/correlation", **BASE).json["matrix"]
    assert np.allclose(np.diag(corr), 1.0)
    png = client.get("/api/image/5.png", **BASE)
    assert png.mimetype == "image/png"
    assert np.array_equal(np.asarray(Image.open(BytesIO(png.data))), bench.images[5].permute(1, 2, 0).numpy())
    predicted = client.post("/api/predict", json={"operation": "scale", "channels": [2], "alpha": 0.5}, **BASE).json
    assert [p["attribute"] for p in predicted["predicted"]] == NAMES
    assert client.get("/api/score", **BASE).json["trials"] == 0


KINDS = ("channels", "number", "attributes", "choice")
BAD = [
    ("post", "/api/apply", {"off": [99]}, 400, "off: a channel must be an id in 0..7, got 99"),
    ("post", "/api/apply", {"off": [1, 1]}, 400, "listed twice"),
    ("post", "/api/apply", {"off": "3"}, 400, "off must be a list"),
    ("post", "/api/apply", {"off": {"semantic_first": 9}}, 400, "semantic_first must be a count in 0..8"),
    ("post", "/api/apply", {"off": {"top_of": "Beard"}}, 400, "unknown attribute \"Beard\""),
    ("post", "/api/apply", {"tone": {"all": {"n": 0}}}, 400, "n must be a number in [0.1, 10], got 0"),
    ("post", "/api/apply", {"tone": {"all": {"n": -1}}}, 400, "n must be a number"),
    ("post", "/api/apply", {"tone": {"Male": {"beta": 1.5}}}, 400, "beta must be a number in [0, 1]"),
    ("post", "/api/apply", {"tone": {"Nose": {"n": 2}}}, 400, "this network's attributes, got [\"Nose\"]"),
    ("post", "/api/apply", {"tone": 3}, 400, "tone must be an object"),
    ("post", "/api/apply", {"tone": {"all": {"n": 2}}, "n": [1, 1, 1]}, 400, "not both"),
    ("post", "/api/apply", {"network": PLAIN, "tone": {"all": {"n": 2}}}, 400, "no attention masks"),
    ("post", "/api/apply", {"network": "vgg"}, 400, f"network must be one of {ATT}, {PLAIN}"),
    ("post", "/api/apply", {"pruned": [1]}, 400, "unknown key 'pruned'"),
    ("post", "/api/apply", {"beta": [0, 0, 2]}, 400, "beta must be a number in [0, 1], got 2"),
    ("post", "/api/apply", [1, 2], 400, "must be a JSON object"),
    ("post", "/api/apply", {"operation": "rotate"}, 400, "operation must be one of prune"),
    ("post", "/api/apply", {"operation": ["scale"]}, 400, "operation must be one of"),
    ("post", "/api/apply", {"operation": "scale", "channels": [1], "alpha": 3}, 400, "alpha must be a number in [0, 2"),
    ("post", "/api/apply", {"operation": "scale", "channels": [], "alpha": 1}, 400, "non-empty list"),
    ("post", "/api/apply", {"operation": "scale", "channels": [1], "alpha": 1, "beta": 0}, 400, "unknown key 'beta'"),
    ("post", "/api/apply", {"operation": "prune", "channels": {"semantic_last": 2}}, 400, "channels must be a list"),
    ("post", "/api/apply", {"network": PLAIN, "operation": "tone", "n": 2}, 400, "has no masks"),
    ("post", "/api/apply", {"operations": {"operation": "prune"}}, 400, "operations must be a list"),
    ("post", "/api/apply", {"operations": [{"operation": "prune", "channels": [1]}, 7]}, 400, "operations[1]: an"),
    ("post", "/api/apply", {"operations": [], "off": [1]}, 400, "\"operations\" comes alone"),
    ("post", "/api/apply", {"operations": [{"operation": "prune", "channels": [0]}] * 17}, 400, "at most 16"),
    ("post", "/api/predict", {"tone": {"all": {"n": True}}}, 400, "n must be a number"),
    ("post", "/api/trial", {"mode": "guess"}, 400, "mode must be one of random, own"),
    ("post", "/api/trial", {"network": "resnet"}, 400, f"network must be one of {ATT}, {PLAIN}, blind"),
    ("post", "/api/trial", {"mode": "own"}, 400, "needs a \"perturbation\""),
    ("post", "/api/trial", {"mode": "own", "perturbation": {"operation": "scale", "channels": [1]}}, 400, "alpha must"),
    ("post", "/api/trial", {"mode": "random", "seed": 1}, 400, "unknown key 'seed'"),
    ("post", "/api/trial/abc/commit", {"predictions": {}}, 404, "no trial \"abc\""),
    ("post", "/api/export", {"perturbation": {}, "name": "../up"}, 400, "name must be"),
    ("post", "/api/export", {"perturbation": {}, "name": ".hidden"}, 400, "name must be"),
    ("post", "/api/export", {"perturbation": {"off": list(range(8))}, "name": "none"}, 400, "keep at least one"),
    ("post", "/api/export", {"perturbation": {"operation": "scale", "channels": list(range(8)), "alpha": 0},
                             "name": "none"}, 400, "keep at least one"),
    ("get", "/api/attribute/Beard", None, 400, "unknown attribute \"Beard\""),
    ("get", "/api/channel/8", None, 400, "channel must be an id in 0..7, got 8"),
    ("get", "/api/image/32.png", None, 404, "no image 32"),
    ("get", "/api/channel/8/fires/0.png", None, 400, "channel must be an id in 0..7, got 8"),
    ("get", "/api/channel/0/mask/32.png", None, 404, "no image 32"),
    ("get", "/api/channel/0/mask/0.png?attribute=Beard", None, 400, "unknown attribute \"Beard\""),
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
             (dict(data="{\"off\": [" + "1," * 600000 + "1]}", content_type="application/json"), 413, ""),
             (dict(data="[" * 200000 + "]" * 200000, content_type="application/json"), 400,
              "the request body is nested more than 32 levels deep"),
             (dict(data="{\"operation\": \"scale\", \"channels\": [1], \"alpha\": NaN}",
                   content_type="application/json"), 400, "NaN is not a JSON number")]
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
             ({"predictions": "up"}, "must be a JSON object"),
             ({"predictions": good, "answer": 1}, "unknown key 'answer' in the commit")]
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
    blind, blind_answer = commit_all(client, "blind")
    assert blind["network"] == "hidden" and blind["perturbation"]["network"] == "hidden"
    assert blind_answer["network"] in (ATT, PLAIN)
    commit_all(client, ATT, 1, 1)
    own, answer = commit_all(client, ATT, 0, mode="own", body={"perturbation": {"off": [2, 4]}})
    assert own["description"] == "switch off channels 2, 4"
    trials, warnings = read_trials(log)
    assert len(trials) == 3 and not warnings
    last = trials[-1]
    assert last["person"] == [0] * len(last["attributes"]) and last["confidence"] == 0.7
    assert last["operation"] == "prune" and last["params"] == {"operation": "prune", "channels": [2, 4]}
    assert last["perturbation"] == last["params"] and last["source"] == "own" and last["network"] == ATT
    assert last["version"] == 2 and trials[0]["network"] == blind_answer["network"] and trials[0]["blind"]
    assert last["measured"] == pytest.approx([m["logit_change"] for m in answer["measured"]])
    score = client.get("/api/score", **BASE).json
    assert score["trials"] == 3 and set(score["by_network"]) <= {ATT, PLAIN}
    expected = score_log(log, n_boot=100)
    assert score["formula"]["score"] == pytest.approx(expected["formula"]["score"])
    assert score["no_change"]["score"] == 0.0


@pytest.mark.parametrize("name,which", CASES, ids=CASE_IDS)
def test_an_own_trial_of_every_operation(run, bench, client, tmp_path, name, which):
    """Before the commit: the description and the cards of the shown attributes, nothing predicted or
    measured; the log line names the network as Run.network_name does, the operation and its params."""
    net, op, params = drawn(bench, name, which, seed=1)
    if params is None:
        refused = client.post("/api/trial", json={"mode": "own", "network": net.name,
                                                   "perturbation": {"operation": name}}, **BASE)
        assert refused.status_code == 400
        return
    trial, answer = commit_all(client, net.name, 1, 2, mode="own", body={"perturbation": op.to_json(params)})
    index = [NAMES.index(a) for a in trial["attributes"]]
    card = op.card(net.view, params)
    assert trial["description"] == card.description and trial["operation"] == name
    assert trial["cards"] == [plain_json(card.to_json(NAMES, index))]
    assert not {"predicted", "measured", "formula", "score"} & set(trial)
    assert all(set(row) == {"attribute", *card.facts} for row in trial["cards"][0]["attributes"])
    record = read_trials(tmp_path / "trials.jsonl")[0][-1]
    assert record["network"] == Run.open(net.run.path).network_name(run.parent) == net.name
    assert record["operation"] == name and record["params"] == plain_json(op.to_json(params))
    assert bench.perturbation({"network": record["network"], **record["params"]}).steps[0].params == params
    assert record["formula"] == [op.predict(net.view, params).change[k].item() for k in index]
    assert record["measured"] == [m["logit_change"] for m in answer["measured"]]


def test_random_trials_draw_every_family_that_applies(bench, client):
    seen = {ATT: set(), PLAIN: set(), "blind": set()}
    for _ in range(40):
        for network in seen:
            trial = client.post("/api/trial", json={"network": network}, **BASE).json
            seen[network].add(trial["operation"])
            assert "cards" in trial and trial["cards"][0]["operation"] == trial["operation"]
    for network in (ATT, PLAIN):
        assert seen[network] == {op.name for op in bench.operations([network])}
    assert seen["blind"] == {op.name for op in bench.operations()} == seen[PLAIN]


def test_the_trials_are_not_seeded_the_same_on_every_start(run, bench):
    _, data = Run.open(run).eval_data(progress=False)
    nets = list(bench.networks.values())
    fresh = [Workbench(nets, data) for _ in range(2)]
    assert fresh[0].seed != fresh[1].seed
    draws = [[w.random_perturbation(ATT) for _ in range(8)] for w in fresh]
    assert draws[0] != draws[1]
    seeded = [[Workbench(nets, data, seed=5).random_perturbation(ATT) for _ in range(1)] for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_a_blind_trial_only_uses_operations_of_every_network(client, bench):
    everywhere = {op.name for op in bench.operations()}
    assert everywhere == {op.name for op in bench.operations([PLAIN])}
    refused = client.post("/api/trial", json={"mode": "own", "network": "blind",
                                               "perturbation": {"tone": {"all": {"n": 2}}}}, **BASE)
    assert refused.status_code == 400 and "hidden" in refused.json["error"]
    assert ATT not in refused.json["error"] and PLAIN not in refused.json["error"]       # the network stays hidden
    for _ in range(10):
        trial = client.post("/api/trial", json={"network": "blind"}, **BASE).json
        assert trial["operation"] in everywhere and trial["perturbation"]["network"] == "hidden"


def test_a_cut_last_line_is_skipped_with_a_warning(client, tmp_path):
    log = tmp_path / "trials.jsonl"
    commit_all(client, ATT)
    with open(log, "ab") as f:
        f.write(b'{"trial": "cut", "network": "att')          # a server killed mid-write
    score = client.get("/api/score", **BASE).json
    assert score["trials"] == 1 and "line 2 skipped (the last line, cut short" in score["warnings"][0]
    commit_all(client, ATT)                                   # the next trial starts on its own line
    trials, warnings = read_trials(log)
    assert len(trials) == 2 and len(warnings) == 1 and "not a trial" in warnings[0]
    assert client.get("/", **BASE).status_code in (200, 404)  # the page itself never fails on the log


@pytest.mark.parametrize("damage", [
    '"person": [' + "9" * 400 + ', 0, 0, 0]',             # overflowed the score (OverflowError)
    '"person": [1e308, 1e308, 1e308, 1e308]',             # crashed the report's plots (LinAlgError)
    '"person": ' + "[" * 200000 + "]" * 200000,           # a RecursionError in the reader
    '"person": [Infinity, 0, 0, 0]'])
def test_a_damaged_line_is_skipped_and_later_commits_still_score(client, tmp_path, damage):
    log = tmp_path / "trials.jsonl"
    commit_all(client, ATT)
    good = log.read_text().strip()
    damaged = json.loads(good)
    line = json.dumps({k: v for k, v in damaged.items() if k != "person"})[:-1] + ", " + damage + "}"
    with open(log, "a") as f:
        f.write(line + "\n")
    score = client.get("/api/score", **BASE)
    assert score.status_code == 200 and score.json["trials"] == 1
    assert len(score.json["warnings"]) == 1 and "line 2 skipped" in score.json["warnings"][0]
    commit_all(client, ATT)                                    # a later commit is logged and scored
    result = score_trial_log(log, n_boot=50)
    assert result.trials == 2 and len(result.warnings) == 1


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


def test_every_predictor_is_scored_on_the_same_resamples():
    rng = np.random.default_rng(0)
    measured = [rng.normal(size=k) for k in rng.integers(1, 5, 30)]
    guess = [np.round(m + rng.normal(size=m.size)) for m in measured]
    scores = trial_bootstraps({"a": guess, "b": guess, "none": [np.zeros(m.size) for m in measured]}, measured, 300)
    assert scores["a"] == scores["b"] == trial_bootstrap(guess, measured, 300)     # the same seed, the same counts
    assert scores["none"] == {"score": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n": sum(m.size for m in measured)}
    assert scores["a"]["ci_low"] < scores["a"]["score"] < scores["a"]["ci_high"]


def test_the_desk_scores_a_snapshot_without_holding_its_lock(bench, tmp_path, monkeypatch):
    desk = TrialDesk(bench, tmp_path / "trials.jsonl", n_boot=20)
    for trial in TRIALS:
        append_trial(desk.log, trial)
    scoring, finish = threading.Event(), threading.Event()
    score_trials = human.score_trials

    def slow_score(*args, **kwargs):
        scoring.set()
        assert finish.wait(30)
        return score_trials(*args, **kwargs)

    monkeypatch.setattr(human, "score_trials", slow_score)
    result = {}
    worker = threading.Thread(target=lambda: result.update(desk.score()))
    worker.start()
    assert scoring.wait(30)
    assert desk.lock.acquire(timeout=5)                         # a commit appends while the score runs
    append_trial(desk.log, TRIALS[0])
    desk.lock.release()
    finish.set()
    worker.join(30)
    assert result["trials"] == 3 and not result["warnings"] and "log" not in result   # the bytes read before
    monkeypatch.setattr(human, "score_trials", score_trials)
    assert desk.score()["trials"] == 4


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


def test_serve_refuses_a_log_it_cannot_write(run, capsys, bench, tmp_path):
    blocker = tmp_path / "hitl"
    blocker.write_text("a file where the log's folder should be")
    with pytest.raises(HPNetError, match=r"hitl/trials.jsonl: the trial log cannot be written"):
        create_app(bench, port=PORT, log=blocker / "trials.jsonl")
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "hitl", ignore_errors=True)
    (copy / "hitl").write_text("not a folder")
    assert main(["serve", str(copy), "--images", "8", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trials.jsonl: the trial log cannot be written" in err[0]


def test_a_commit_the_log_refuses_stays_open_and_can_be_committed_again(client, tmp_path, monkeypatch):
    import hpnet.hitl.trials as trials_module

    def full_disk(path, record):
        raise OSError(28, "No space left on device")
    trial = client.post("/api/trial", json={"mode": "random", "network": ATT}, **BASE).json
    body = {"predictions": {a: {"direction": 1, "size": 1} for a in trial["attributes"]}}
    with monkeypatch.context() as m:
        m.setattr(trials_module, "append_trial", full_disk)
        refused = client.post(f"/api/trial/{trial['trial']}/commit", json=body, **BASE)
    assert refused.status_code == 503 and "No space left on device" in refused.json["error"]
    assert "still open" in refused.json["error"] and "\n" not in refused.json["error"]
    again = client.post(f"/api/trial/{trial['trial']}/commit", json=body, **BASE)
    assert again.status_code == 200
    assert len(read_trials(tmp_path / "trials.jsonl")[0]) == 1          # logged once


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
        "mode", "perturbation", "predictions", "direction", "size", "confidence", "name", "x", "operation",
        "operations", "channels", "alpha", "attributes", "curves"]
JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 12) | st.floats(-1e3, 1e3) |
                    st.sampled_from([float("nan"), float("inf"), 1e308, 0.1, 10.0]) |
                    st.sampled_from([ATT, PLAIN, "blind", "random", "own", "Smiling", "", "..", "x" * 70,
                                     *OPERATIONS.names()]),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
                    max_leaves=12)


@pytest.fixture(scope="module")
def fuzz_client(run, tmp_path_factory):
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


HUGE = ["9" * 400, "-" + "9" * 5000, "1e999", "-1e999", "NaN", "Infinity", "-Infinity"]
LEAVES = st.sampled_from([*HUGE, "1e308", "4e-400", '"' + "x" * 5000 + '"', '"\\ud800"', "true", "null", "{}", "[]"])


@st.composite
def hostile_body(draw) -> tuple[bytes, bool]:
    """Raw request text a JSON encoder never writes (nesting far past the limit, integers of
    thousands of digits, non-finite numbers, cut text, invalid UTF-8) or odd but valid JSON; and
    whether it is hostile (then it must be refused)."""
    depth = draw(st.sampled_from([1, 2, 31, 33, 200, 5000, 200000]))
    inner = draw(LEAVES)
    opener = draw(st.sampled_from(["[", '{"a":', '{"network":', '{"predictions":']))
    text = opener * depth + inner + {"[": "]"}.get(opener, "}") * depth
    wrap = draw(st.sampled_from(['{"mode": "own", "perturbation": %s}', '{"predictions": %s}',
                                 '{"network": "blind", "off": %s}', "%s"]))
    text = wrap % text
    cut = draw(st.sampled_from([None, 1, len(text) // 2]))
    tail = draw(st.sampled_from([b"", b"\xff\xfe", b" "]))
    hostile = depth > 31 or inner in HUGE or cut is not None or tail == b"\xff\xfe"
    return (text[:cut] if cut else text).encode() + tail, hostile


@settings(max_examples=int(os.environ.get("HPNET_FUZZ_EXAMPLES", "40")), deadline=None, derandomize=True,
          database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                HealthCheck.data_too_large])
@given(case=hostile_body(), path=st.sampled_from(["/api/apply", "/api/predict", "/api/trial", "/api/export", "commit"]))
def test_hostile_raw_bodies_never_get_a_500_and_are_refused_in_one_line(fuzz_client, case, path):
    body, hostile = case
    if path == "commit":
        trial = fuzz_client.post("/api/trial", json={"mode": "random"}, **BASE).json["trial"]
        path = f"/api/trial/{trial}/commit"
    response = fuzz_client.post(path, data=body, content_type="application/json", **BASE)
    assert response.status_code < 500 and (400 <= response.status_code or not hostile), (path, body[:200])
    if response.status_code >= 400:
        error = response.json["error"]
        assert error and "\n" not in error and "Traceback" not in error and len(error) <= 300


def test_the_demo_ends_with_the_serve_command_and_it_loads(tmp_path, capsys):
    from hpnet.commands import demo
    out = tmp_path / "demo"
    demo(out, images=64, image_size=16, epochs=1, progress=False)
    serve, study = capsys.readouterr().out.strip().splitlines()[-2:]
    assert f"hpnet serve {out}" in serve and "http://127.0.0.1:8000/" in serve
    assert f"hpnet study serve {out / 'study'}" in study and f"hpnet study invite {out / 'study'} -n 20" in study
    bench = Workbench.from_run(out, images=16)                  # what that command loads
    assert list(bench.networks) == ["demo (attention)", "demo/plain (linear)"] and bench.channels == 64
    from hpnet.study import Study
    identities = sorted(n["identity"] for n in Study(out / "study").networks.values())
    assert identities == ["demo (attention)", "demo/channel (channel)", "demo/plain (linear)"]


def test_the_bench_of_the_page_runs(tmp_path):
    from hpnet.bench.hitl import apply_latency, score_latency, write_trial_log
    got = apply_latency(images=16, requests=6, quick=True)
    assert got["requests"] == 6 and got["median_ms"] > 0 and got["channels"] == 8
    score = score_latency(trials=50, n_boot=20)
    assert (score["trials"], score["pairs"], score["n_boot"]) == (50, 200, 20) and score["score_peak_mb"] > 0
    write_trial_log(tmp_path / "trials.jsonl", 10)              # lines a server could have appended
    trials, warnings = read_trials(tmp_path / "trials.jsonl")
    assert len(trials) == 10 and not warnings and {t["network"] for t in trials} == {"bench (attention)",
                                                                                     "bench/plain (linear)"}


def test_a_newly_registered_operation_is_served_with_no_edit(run, bench, client, tmp_path):
    """An operation registered after the server started: listed, predicted, measured, exported, drawn in trials."""
    with flip_registered() as op:
        listed = {o["name"]: o for o in client.get("/api/model", **BASE).json["operations"]}
        assert listed["flip"]["networks"] == [ATT, PLAIN] and listed["flip"]["fields"][0]["kind"] == "channels"
        for net in bench.networks.values():
            params = op.parse({"channels": [1, 6]}, net.view)
            got = client.post("/api/apply", json={"network": net.name, "operation": "flip", "channels": [1, 6]},
                              **BASE).json
            assert [r["change"] for r in got["predicted"]] == op.predict(net.view, params).change.tolist()
            model = net.run.model()
            _, data = Run.open(run).eval_data(progress=False)
            m = measure_operations(model, data, [op.heads(model, params)], max_images=IMAGES)
            assert [r["logit_change"] for r in got["measured"]] == \
                pytest.approx(per_std(m["mean_change"][0], m["logit_std"]).tolist(), abs=1e-5)
        exported = client.post("/api/export", json={"perturbation": {"operation": "flip", "channels": [2]},
                                                    "name": "flipped"}, **BASE).json
        assert exported["channels"] == 8
        assert Run.open(run / "hitl" / "exports" / "flipped").model().operation_state().keep[2] == -1
        drawn_ops = {client.post("/api/trial", json={"network": "blind"}, **BASE).json["operation"] for _ in range(80)}
        assert "flip" in drawn_ops
        trial, _ = commit_all(client, ATT, mode="own", body={"perturbation": {"operation": "flip", "channels": [3]}})
        assert trial["description"] == "flip channel 3" and trial["cards"][0]["operation"] == "flip"
        assert read_trials(tmp_path / "trials.jsonl")[0][-1]["operation"] == "flip"
    assert "flip" not in [o["name"] for o in client.get("/api/model", **BASE).json["operations"]]
