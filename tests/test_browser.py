"""The page of ``hpnet serve`` in a real browser: look, perturb, apply, predict, then see.

Chromium is the system's (/usr/bin/chromium, never downloaded), driven by Playwright; the module is
skipped when either is missing. The Operation panel is driven for every registered operation's
controls (built from /api/model) and for prune, scale and tone in particular. A screenshot is left in $HPNET_ARTIFACTS (default test-artifacts/).
"""
import json
import math
import os
import threading
from pathlib import Path

import pytest

from dissecthelp import every_channel_named
from browserhelp import TIMEOUT_MS, chromium, expect
from hpnet.commands import train_run
from hpnet.data import DataSpec
from hpnet.train import TrainConfig

NAMES = ["Smiling", "Eyeglasses", "Wearing_Hat"]
TINY = {"backbone": "strided", "widths": (4, 6, 8)}


def artifacts() -> Path:
    folder = Path(os.environ.get("HPNET_ARTIFACTS") or Path(__file__).resolve().parents[1] / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny trained run (and its plain-CNN baseline) served on a free loopback port: ``(url, app, run folder)``."""
    from werkzeug.serving import make_server

    from hpnet.hitl import Workbench
    from hpnet.hitl.app import create_app

    out = tmp_path_factory.mktemp("hitl") / "run"
    spec = DataSpec(dataset="synthetic", image_size=16, max_images=256, attributes=NAMES)
    train_run(out, spec, dict(TINY), TrainConfig(epochs=1, batch_size=32), progress=False)
    train_run(out / "plain", spec, {**TINY, "head": "linear"}, TrainConfig(epochs=1, batch_size=32), progress=False)
    with every_channel_named():            # so that the role operation applies (see dissecthelp)
        bench = Workbench.from_run(out, images=32)
    server = make_server("127.0.0.1", 0, lambda environ, start_response: [], threaded=True)
    port = server.server_port
    app = create_app(bench, host="127.0.0.1", port=port, n_boot=200)
    server.app = app                       # the app checks the Host header, so it needs the bound port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", app, out
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


def open_page(browser, url: str):
    """(context, page, script errors so far): the page loaded and ready."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    expect(page.locator("#status")).to_have_text("Ready.")
    return context, page, errors


@pytest.fixture
def page(browser, served):
    """The page, loaded and ready; fails the test on any script error in it."""
    context, page, errors = open_page(browser, served[0])
    yield page
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def api(app, url, path, body=None):
    client = app.test_client()
    if body is None:
        response = client.get(path, base_url=url)
    else:
        response = client.post(path, json=body, base_url=url)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def role_words(role) -> str:
    """How the page names a channel's role after its id."""
    return "" if role is None else " (no one face part)" if role == "none" else f" ({role})"


def shown_number(text: str) -> float:
    return float(text.replace("%", "").replace("pp", "").replace("+", "").strip())


def assert_cell(cell, value, scale=1.0, decimals=3):
    """A number cell shows ``value`` rounded to ``decimals`` (after ``scale``) and holds it in data-value."""
    assert float(cell.get_attribute("data-value")) == pytest.approx(value, rel=1e-12, abs=1e-12)
    assert shown_number(cell.inner_text()) == pytest.approx(scale * value, abs=0.5 * 10 ** -decimals + 1e-9)


def assert_prediction(page, predicted):
    """The formula panel shows ``predicted`` (it refreshes by itself, a moment after a change)."""
    for p in predicted:
        cell = f'[data-testid="predict-{p["attribute"]}"] [data-field=change]'
        page.wait_for_function("([cell, v]) => Math.abs(document.querySelector(cell)?.dataset.value - v) < 1e-12",
                               arg=[cell, p["change"]])
        assert_cell(page.locator(cell), p["change"])
        assert_cell(page.locator(f'[data-testid="predict-{p["attribute"]}"] [data-field=size]'), p["size"])


def assert_card(page, card, prefix="card"):
    """A card's number facts, per attribute row (the page shows each row's number facts)."""
    for row in card["attributes"]:
        for fact, value in row.items():
            if isinstance(value, (int, float)) and fact != "attribute":
                assert_cell(page.get_by_test_id(f"{prefix}-{row['attribute']}").locator(f"[data-field={fact}]"), value)


def choose(page, operation, model, network):
    """Pick ``operation`` in the Operation panel; its fields come from /api/model."""
    page.locator("#operation").select_option(operation)
    fields = next(o for o in model["operations"] if o["name"] == operation)["fields"]
    expect(page.locator("#fields .field")).to_have_count(len(fields))
    return fields


def test_the_operation_panel_is_built_from_the_registry(page, served):
    url, app, _ = served
    from hpnet.operations import OPERATIONS
    model = api(app, url, "/api/model")
    network = model["networks"][0]
    listed = page.locator("#operation option")
    assert listed.evaluate_all("os => os.map(o => o.value)") == \
        [o["name"] for o in model["operations"] if network in o["networks"]] == OPERATIONS.names()
    for o in model["operations"]:
        choose(page, o["name"], model, network)
        expect(page.locator("#formula-text")).to_have_text(f"Formula: {o['formula_text']}")
        for f in o["fields"]:
            kind = f["kind"]
            control = page.locator(f"#fields .field[data-name={f['name']}]")
            assert control.get_attribute("data-kind") == kind
            if kind == "channels":
                assert page.locator(f"#field-{f['name']} input[type=checkbox]").count() == model["channels"]
            else:
                assert page.locator(f"#field-{f['name']}").evaluate("e => e.tagName") == \
                    ("INPUT" if kind == "number" else "SELECT")


def test_look_perturb_apply_then_a_trial_predicted_and_scored(page, served):
    url, app, run = served
    model = api(app, url, "/api/model")
    network, K, C = model["networks"][0], len(model["attributes"]), model["channels"]
    assert model["attributes"] == NAMES and model["networks"] == [network, "run/plain (linear)"]
    assert network == "run (attention)"

    # Look: the grid, a cell clicked selects its attribute and channel.
    assert page.locator("#grid td.cell").count() == K * C
    page.get_by_test_id("cell-1-2").click()
    expect(page.locator("#status")).to_have_text(f"Selected {NAMES[1]}, channel 2.")
    accuracy = page.get_by_test_id("attribute-accuracy")
    assert shown_number(accuracy.inner_text()) == pytest.approx(100 * model["accuracy"][network][1], abs=0.05 + 1e-9)
    view = api(app, url, f"/api/attribute/{NAMES[1]}")
    assert page.locator("#attribute-view canvas").count() == len(view["maps"]) * len(view["samples"])
    channel = api(app, url, "/api/channel/2")                     # each channel named with where it fires
    expect(page.get_by_test_id("channel-title")).to_have_text(f"Channel 2{role_words(channel['role'])}")
    for p in channel["partners"]:
        row = page.get_by_test_id(f"partner-{p['channel']}").locator("td")
        assert_cell(row.nth(1), p["r"])
        assert row.nth(0).inner_text() == f"{p['channel']}{role_words(p['role'])}"
    assert_where_it_fires(page, channel, view["samples"])
    assert_grid_names_channels(page, model["roles"][network], C)
    expect(page.locator("#accuracy-table tbody tr")).to_have_count(K + 1)

    # Perturb: two channels off; then the same channels scaled; then a tone curve on one attribute.
    choose(page, "prune", model, network)
    page.get_by_test_id("channels-3").check()
    page.get_by_test_id("channels-5").check()
    expect(page.locator("#count-channels")).to_have_text(f"(2 of {C})")
    spec = {"network": network, "operation": "prune", "channels": [3, 5]}
    answer = api(app, url, "/api/predict", spec)
    assert_prediction(page, answer["predicted"])
    assert_card(page, answer["cards"][0])
    roles = model["roles"][network]["role"]                  # the card says where its channels fire
    expect(page.get_by_test_id("card-roles")).to_have_text(f"Where they fire: 3{role_words(roles[3])}, "
                                                           f"5{role_words(roles[5])}.")

    choose(page, "scale", model, network)                    # the channel set stays
    page.locator("#field-alpha").fill("0.5")
    expect(page.locator("#field-alpha-value")).to_have_text("0.50")
    spec = {"network": network, "operation": "scale", "channels": [3, 5], "alpha": 0.5}
    answer = api(app, url, "/api/predict", spec)
    assert_prediction(page, answer["predicted"])
    assert_card(page, answer["cards"][0])
    page.locator("#apply").click()
    expect(page.locator("#status")).to_contain_text("Applied in")
    applied = api(app, url, "/api/apply", spec)
    assert applied["perturbation"] == spec
    for m in applied["measured"]:
        row = page.get_by_test_id(f"apply-{m['attribute']}")
        for field in ("logit_change", "abs_logit_change"):
            assert_cell(row.locator(f"[data-field={field}]"), m[field])
        for field in ("accuracy_before", "accuracy_after", "accuracy_change"):
            assert_cell(row.locator(f"[data-field={field}]"), m[field], scale=100, decimals=1)
        assert row.locator("[data-field=flipped]").inner_text() == str(m["flipped"])
    assert page.locator("#flipped figure").count() == len(applied["flipped_images"])

    choose(page, "tone", model, network)
    page.locator("#field-attributes").select_option(NAMES[0])
    page.locator("#field-n").fill("2")
    page.locator("#field-beta").fill("0.2")
    expect(page.locator("#field-n-value")).to_have_text("2.00")
    answer = api(app, url, "/api/predict", {"network": network, "operation": "tone", "attributes": [NAMES[0]],
                                            "n": 2.0, "beta": 0.2})
    assert_prediction(page, answer["predicted"])
    assert_card(page, answer["cards"][0])

    # Predict, then see: nothing predicted or measured is on the page until the prediction is committed.
    log = run / "hitl" / "trials.jsonl"
    logged = len(log.read_text().splitlines()) if log.exists() else 0
    page.locator("#trial-mode").select_option("random")
    page.locator("#trial-network").select_option(network)
    with page.expect_response("**/api/trial") as started:
        page.locator("#new-trial").click()
    trial = started.value.json()
    expect(page.locator("#status")).to_contain_text(f"Trial {trial['trial']}")
    expect(page.locator("#trial-description")).to_have_text(trial["description"])
    expect(page.locator("#apply-result")).to_be_hidden()
    expect(page.locator("#prediction")).to_be_hidden()
    expect(page.locator("#formula-panel")).to_be_hidden()
    expect(page.locator("#apply")).to_be_disabled()
    assert page.locator("#trial-result").inner_text() == ""
    assert_card(page, trial["cards"][0], "trial-card")
    expect(page.locator("#trial-cards tbody tr")).to_have_count(len(trial["attributes"]))

    choices = [("up", "large", 1, 3), ("none", "none", 0, 0), ("down", "small", -1, 1)]
    clicked = {}
    for name, (direction, size, d, s) in zip(trial["attributes"], choices):
        page.get_by_test_id(f"direction-{name}-{direction}").check()
        page.get_by_test_id(f"size-{name}-{size}").check()
        clicked[name] = (d, s)
    page.locator("#confidence").fill("0.8")
    with page.expect_response("**/commit") as committed:
        page.locator("#commit").click()
    answer = committed.value.json()
    expect(page.locator("#status")).to_have_text("Committed: the trial is logged.")
    expect(page.locator("#formula-panel")).to_be_visible()

    lines = log.read_text().splitlines()
    record = json.loads(lines[-1])
    assert len(lines) == logged + 1 and record["trial"] == trial["trial"] and record["network"] == network
    assert record["operation"] == trial["operation"] and record["params"]["operation"] == trial["operation"]
    assert record["attributes"] == trial["attributes"]
    assert [(d, s) for d, s in zip(record["direction"], record["size"])] == [clicked[a] for a in trial["attributes"]]
    assert record["person"] == [d * s for d, s in (clicked[a] for a in trial["attributes"])]
    assert record["confidence"] == pytest.approx(0.8)
    for name, measured, formula in zip(record["attributes"], record["measured"], record["formula"]):
        row = page.get_by_test_id(f"trial-{name}")
        assert_cell(row.locator("[data-field=measured]"), measured)
        assert_cell(row.locator("[data-field=formula]"), formula)
        assert int(row.locator("[data-field=person]").get_attribute("data-value")) == math.prod(clicked[name])

    score = api(app, url, "/api/score")
    assert score == answer["score"] and score["trials"] == logged + 1
    expect(page.locator("#score-trials")).to_have_text(f"({logged + 1} trial{'' if logged == 0 else 's'})")
    for key in ("person", "formula", "no_change"):
        cell = page.get_by_test_id(f"score-{key}").locator("[data-field=score]")
        if score[key]["score"] is None:         # NaN: too few pairs for a rank correlation
            assert cell.inner_text() == "—"
        else:
            assert shown_number(cell.inner_text()) == pytest.approx(score[key]["score"], abs=5e-4 + 1e-9)
        assert page.get_by_test_id(f"score-{network}-{key}").count() == 1
    expect(page.locator("#apply")).to_be_enabled()
    page.screenshot(path=str(artifacts() / "hitl-page.png"), full_page=True)


def assert_where_it_fires(page, channel, samples):
    """The channel view names where the channel fires in words and shows, per sample image, where it
    fires beside its mask (both pictures loaded)."""
    fires = channel["fires"]
    assert channel["role"] not in (None, "none")             # every channel is named here (see dissecthelp)
    words = page.get_by_test_id("channel-fires-words")
    expect(words).to_contain_text(f"Fires on the {channel['role']}: its top 5% of activations overlap the "
                                  f"{channel['role']} with IoU {fires['iou']:.2f}")
    for i in samples:
        for kind in ("fires", "mask"):
            picture = page.get_by_test_id(f"{kind}-{channel['channel']}-{i}")
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=picture.element_handle())
            assert picture.evaluate("img => img.naturalWidth") == 128


def assert_grid_names_channels(page, roles, C):
    """A row of part colours under the channel ids, tooltips naming the part, a legend that marks a
    part's columns, and the columns grouped by part on request."""
    assert page.locator("#grid tr.parts th.part").evaluate_all("ths => ths.map(t => t.dataset.part)") == roles["role"]
    title = page.locator("#grid th.channel").nth(2).get_attribute("title")
    assert title == f"channel 2: fires on the {roles['role'][2]} (IoU {roles['iou'][2]:.2f})"
    part = roles["role"][2]
    page.get_by_test_id(f"legend-{part}").click()
    faded = page.locator("#grid tbody tr").first.locator("td.cell").evaluate_all(
        "tds => tds.map(td => td.classList.contains('faded'))")
    assert faded == [r != part for r in roles["role"]]
    page.get_by_test_id(f"legend-{part}").click()            # unmarked again
    expect(page.locator("#grid td.cell.faded")).to_have_count(0)
    page.locator("#grid-order").select_option("part")
    grouped = page.locator("#grid tr.parts th.part").evaluate_all("ths => ths.map(t => t.dataset.part)")
    rank = [roles["parts"].index(p) for p in grouped]
    assert sorted(grouped) == sorted(roles["role"]) and rank == sorted(rank)
    page.locator("#grid-order").select_option("id")


def test_the_channels_of_a_part_fill_a_channel_set(page, served):
    url, app, _ = served
    model = api(app, url, "/api/model")
    network = model["networks"][0]
    roles = model["roles"][network]["role"]
    part = roles[0]
    choose(page, "prune", model, network)
    page.locator("#part-choice-channels").select_option(part)
    page.locator("#part-channels-channels").click()
    for c, role in enumerate(roles):
        assert page.get_by_test_id(f"channels-{c}").is_checked() == (role == part)
        label = page.get_by_test_id(f"channels-{c}").locator("xpath=..")
        assert label.inner_text().split() == [str(c), role]


def test_an_own_scale_trial_shows_its_card_and_logs_its_params(page, served):
    url, app, run = served
    model = api(app, url, "/api/model")
    network = model["networks"][0]
    choose(page, "scale", model, network)
    page.get_by_test_id("channels-6").check()
    page.locator("#field-alpha").fill("1.5")
    page.locator("#trial-mode").select_option("own")
    page.locator("#trial-network").select_option(network)
    with page.expect_response("**/api/trial") as started:
        page.locator("#new-trial").click()
    trial = started.value.json()
    assert trial["operation"] == "scale" and trial["perturbation"]["alpha"] == 1.5
    expect(page.locator("#trial-description")).to_have_text("scale channel 6 by 1.5")
    expect(page.locator("#formula-panel")).to_be_hidden()
    assert_card(page, trial["cards"][0], "trial-card")
    for name in trial["attributes"]:
        page.get_by_test_id(f"direction-{name}-up").check()
    with page.expect_response("**/commit"):
        page.locator("#commit").click()
    expect(page.locator("#status")).to_have_text("Committed: the trial is logged.")
    record = json.loads((run / "hitl" / "trials.jsonl").read_text().splitlines()[-1])
    assert record["params"] == {"operation": "scale", "channels": [6], "alpha": 1.5} and record["network"] == network


def test_export_and_an_api_error_on_the_status_line(page, served):
    url, app, run = served
    model = api(app, url, "/api/model")
    choose(page, "prune", model, model["networks"][0])
    page.get_by_test_id("channels-0").check()
    page.locator("#export-name").fill("no good/name")
    page.locator("#export").click()
    expect(page.locator("#status")).to_have_class("status error")
    expect(page.locator("#status")).to_contain_text("/api/export: name must be")

    page.locator("#semantic-count-channels").fill("2")
    page.locator("#semantic-first-channels").click()
    off = sorted(model["semantic_order"][:2])
    for c in range(8):
        assert page.get_by_test_id(f"channels-{c}").is_checked() == (c in off)
    page.locator("#export-name").fill("pruned")
    page.locator("#export").click()
    expect(page.locator("#export-path")).to_have_text("hitl/exports/pruned (6 channels kept)")
    assert (run / "hitl" / "exports" / "pruned" / "model.safetensors").is_file()
    expect(page.locator("#status")).to_have_text("Exported to hitl/exports/pruned.")
    page.locator("#clear-channels").click()
    page.locator("#apply").click()
    expect(page.locator("#status")).to_contain_text("choose at least one channel")


def test_the_plain_network_takes_no_tone_curve_and_a_blind_trial_hides_the_network(page, served):
    url, app, run = served
    model = api(app, url, "/api/model")
    plain = model["networks"][1]
    page.locator("#network").select_option(plain)
    usable = [o["name"] for o in model["operations"] if plain in o["networks"]]
    assert "tone" not in usable
    assert page.locator("#operation option").evaluate_all("os => os.map(o => o.value)") == usable
    choose(page, "prune", model, plain)
    page.get_by_test_id("channels-1").check()
    page.locator("#apply").click()
    expect(page.locator("#status")).to_contain_text("Applied in")
    applied = api(app, url, "/api/apply", {"network": plain, "operation": "prune", "channels": [1]})
    for m in applied["measured"]:
        row = page.get_by_test_id(f"apply-{m['attribute']}")
        assert_cell(row.locator("[data-field=logit_change]"), m["logit_change"])

    page.locator("#trial-network").select_option("blind")
    with page.expect_response("**/api/trial") as started:
        page.locator("#new-trial").click()
    trial = started.value.json()
    expect(page.locator("#trial-network-shown")).to_have_text("hidden")
    assert trial["operation"] in usable
    for name in trial["attributes"]:
        page.get_by_test_id(f"direction-{name}-none").check()
    expect(page.get_by_test_id(f"size-{trial['attributes'][0]}-none")).to_be_checked()
    with page.expect_response("**/commit") as committed:
        page.locator("#commit").click()
    answer = committed.value.json()
    expect(page.locator("#trial-result")).to_contain_text(f"Network: {answer['network']}.")
    record = json.loads((run / "hitl" / "trials.jsonl").read_text().splitlines()[-1])
    assert record["trial"] == trial["trial"] and record["blind"] and record["person"] == [0] * len(trial["attributes"])


def test_a_newly_registered_operation_appears_on_the_page(browser, served):
    """An operation registered in hpnet.operations reaches the Operation panel and the trials with no
    edit to the page (tests/extra_operation.py's "flip", registered for this test only)."""
    from extra_operation import flip_registered

    url, app, run = served
    with flip_registered():
        context, page, errors = open_page(browser, url)
        model = api(app, url, "/api/model")
        network = model["networks"][0]
        choose(page, "flip", model, network)
        page.get_by_test_id("channels-2").check()
        answer = api(app, url, "/api/predict", {"network": network, "operation": "flip", "channels": [2]})
        assert_prediction(page, answer["predicted"])
        assert_card(page, answer["cards"][0])
        page.locator("#trial-mode").select_option("own")
        page.locator("#trial-network").select_option(network)
        with page.expect_response("**/api/trial"):
            page.locator("#new-trial").click()
        expect(page.locator("#trial-description")).to_have_text("flip channel 2")
        context.close()
        assert not errors, f"script errors on the page: {errors}"
