"""Network dissection: the parts of synthetic faces, channels named on a hand-set extractor (the
threshold's justification), the consistency of roles with the attributes, and ``hpnet dissect``."""
import json

import numpy as np
import pytest
import torch

import hpnet.data.synthetic as syn
from clihelp import one_line, run_cli
from dissecthelp import NAMES, handset
from hpnet.analysis.dissect import DissectSettings, dissect, name_channels, overlaps
from hpnet.analysis.roles import ATTRIBUTE_PARTS, consistency, fig4_roles
from hpnet.data.synthetic import PARTS, features, generate, render
from hpnet.errors import HPNetError
from hpnet.results import DissectResult
from hpnet.run import Run


# ---------------------------------------------------------------------------- the parts of synthetic faces

# the parts each painter may change a pixel of (the head's skin lies under every inner part)
INNER = {"face", "forehead", "cheeks", "chin", "nose", "mouth", "brows", "eyes"}
PAINTED = {"_body": {"neck"}, "_hair_back": {"hair"}, "_head": INNER | {"ears", "hair"},
           "_age_lines": INNER, "_rosy_cheeks": {"cheeks"}, "_makeup": {"eyes", "brows", "cheeks"},
           "_eyes": {"eyes"}, "_brows": {"brows"}, "_nose": {"nose"}, "_beard": {"chin", "mouth"}, "_mouth": {"mouth"},
           "_mustache": {"mouth"}, "_sideburns": {"hair"}, "_hair_cap": {"hair"}, "_bangs": {"hair"},
           "_bald_shine": {"face", "forehead"}, "_earrings": {"ears"}, "_glasses": {"glasses", "eyes"}, "_hat": {"hat"}}
DRAW_ALL = {"Wearing_Hat": True, "Eyeglasses": True, "Wearing_Earrings": True, "Mustache": True, "Sideburns": True,
            "Rosy_Cheeks": True, "Heavy_Makeup": True, "Bangs": True, "No_Beard": False, "Young": False, "Bald": False}


def faces(n: int, size: int, seed: int, **fixed: bool):
    rng = np.random.Generator(np.random.PCG64(seed))
    attrs, scene = syn._sample_attributes(rng, n), syn._sample_scene(rng, n)
    attrs.update({k: np.full(n, v) for k, v in fixed.items()})
    return attrs, scene


@pytest.mark.parametrize("case", ["hair", "bald", "goatee"])
def test_the_parts_hold_what_each_painter_draws(monkeypatch, case):
    """Leaving one painter out changes the image only where its parts are, give or take the one-pixel soft
    edges the evidence regions allow for too (render._dilate): >= 97% of the changed pixels; the parts are
    a partition of every image."""
    fixed = {**DRAW_ALL, "Bald": case == "bald", "Goatee": case == "goatee"}
    if case == "bald":
        fixed.update(Bangs=False, Sideburns=False, Wearing_Hat=False)
    n, size = 12, 32
    attrs, scene = faces(n, size, seed=5, **fixed)
    full = syn._render(attrs, scene, size, noise_seed=1).astype(np.float32)
    parts = syn._part_masks(syn._geometry(attrs, scene), syn._part_info(attrs, scene), size)   # (n, P, S, S)
    np.testing.assert_allclose(parts.sum(1), 1.0, atol=1e-6)
    checked = 0
    for i, feature in enumerate(features.FEATURES):
        monkeypatch.setattr(render, "FEATURES", features.FEATURES[:i] + features.FEATURES[i + 1:])
        without = syn._render(attrs, scene, size, noise_seed=1).astype(np.float32)
        changed = np.abs(full - without).mean(1) > 12
        if changed.sum() < 10:                    # not drawn in this case (e.g. hair on a bald head)
            continue
        allowed = render._dilate(parts[:, [PARTS.index(p) for p in PAINTED[feature.paint.__name__]]].sum(1) > 0.25)
        share = allowed[changed].mean()
        assert share >= 0.97, (feature.paint.__name__, share)
        checked += 1
    assert checked >= 12


def test_part_masks_of_a_subset_and_of_the_whole_agree():
    ds = generate(10, image_size=16, seed=2, attributes=NAMES)
    whole = ds.part_masks()
    assert whole.shape == (10, len(PARTS), 16, 16) and whole.dtype == torch.float32
    torch.testing.assert_close(ds.subset(torch.tensor([3, 7])).part_masks(), whole[[3, 7]])
    torch.testing.assert_close(ds.part_masks([7, 3]), whole[[7, 3]])


def test_each_attribute_map_names_the_parts_of_its_synthetic_evidence_region():
    """ATTRIBUTE_PARTS against the generator's evidence regions: on images that show the attribute
    (that lack it, for No_Beard and Bald, whose evidence is a beard or hair), its parts hold at least a
    quarter of its region and at least twice their share of the image."""
    n, size = 100, 64
    attrs, scene = faces(n, size, seed=9)
    parts = syn._part_masks(syn._geometry(attrs, scene), syn._part_info(attrs, scene), size)
    for name in syn.ATTRIBUTES:
        if name not in ATTRIBUTE_PARTS:
            continue
        shows = ~attrs[name] if name in ("No_Beard", "Bald") else attrs[name]
        region = syn._region_masks(syn._geometry(attrs, scene), [name], size)[shows, 0]
        mine = parts[shows][:, [PARTS.index(p) for p in ATTRIBUTE_PARTS[name]]].sum(1)
        inside = float((mine * region).sum() / region.sum())
        lift = inside / float(mine.mean())
        assert inside >= 0.25 and lift >= 2, (name, inside, lift)


# ---------------------------------------------------------------------------- a hand-set extractor


@pytest.mark.parametrize("size", [32, 64])
def test_a_mouth_channel_is_named_mouth_and_a_constant_one_none(size):
    model, data = handset(size)
    settings = DissectSettings(max_images=64, n_boot=200)
    result = dissect(model, data, settings)
    mouth, constant, noise, background = result.channels
    assert mouth["part"] == "mouth" and mouth["iou"] >= 0.75 and mouth["iou_ci_low"] > settings.threshold
    assert constant["part"] == "none" and constant["iou"] == 0 and constant["area"] == 0
    # the threshold's justification: pixel noise stays below it, a channel on exactly the background above
    assert noise["part"] == "none" and noise["best_part"] == "background" and 0.04 < noise["iou"] < settings.threshold
    assert background["part"] == "background" and 0.07 < background["iou"] < 0.085
    assert result.roles() == {"background": [3], "mouth": [0], "none": [1, 2]}
    assert result.parts == list(PARTS) and np.shape(result.iou) == (4, len(PARTS))
    assert result.iou[0][PARTS.index("mouth")] == pytest.approx(mouth["iou"], abs=1e-6)
    assert result.fig4["shared"] and {e["channel"] for e in result.fig4["top"]["Smiling"]} == {0, 1, 2, 3}


def test_intervals_come_from_resampling_images():
    model, data = handset(32, 16)
    o = overlaps(model, data, DissectSettings(max_images=16))
    assert o.intersection.shape == o.union.shape == (16, 4, len(PARTS)) and o.area.shape == (16, 4)
    channels, iou = name_channels(o, 0.06, n_boot=300, seed=1)
    for c in channels:
        assert c["iou_ci_low"] <= c["iou"] + 1e-12 and c["iou"] <= c["iou_ci_high"] + 1e-12
    one = o._replace(intersection=o.intersection[:1].expand(16, -1, -1), union=o.union[:1].expand(16, -1, -1))
    same, _ = name_channels(one, 0.06, n_boot=50)
    assert all(c["iou_ci_low"] == pytest.approx(c["iou"]) == pytest.approx(c["iou_ci_high"]) for c in same)


def test_consistency_against_known_values():
    names = ["Smiling", "Black_Hair", "Male"]                             # Male has no part: left out
    roles = ["mouth", "hair", "none", "mouth"]
    evidence = torch.tensor([[4.0, 1.0, 3.0, 2.0], [0.0, 5.0, 5.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    c = consistency(evidence, roles, names, PARTS, n_perm=200)
    assert c["left_out"] == ["Male"] and c["attributes"] == 2
    by = {r["attribute"]: r for r in c["per_attribute"]}
    assert by["Smiling"]["share"] == pytest.approx(6 / 10) and by["Smiling"]["chance"] == pytest.approx(2 / 4)
    assert by["Black_Hair"]["share"] == pytest.approx(5 / 10) and by["Black_Hair"]["chance"] == pytest.approx(1 / 4)
    assert c["score"] == pytest.approx(0.55) and c["chance"] == pytest.approx(0.375)
    assert 0 < c["p_value"] <= 1
    assert consistency(evidence, roles, ["Male"], PARTS)["score"] is None


def test_fig4_lists_top_and_shared_channels_or_says_why_not():
    channels = [{"channel": c, "part": p, "iou": 0.1} for c, p in enumerate(["mouth", "eyes", "mouth", "none"])]
    evidence = torch.tensor([[5.0, 4.0, 1.0, 0.0], [5.0, 0.0, 4.0, 1.0]])
    f = fig4_roles(evidence, channels, ["Smiling", "Mouth_Slightly_Open"], top=2)
    assert [e["channel"] for e in f["top"]["Smiling"]] == [0, 1] and f["top"]["Smiling"][0]["evidence_share"] == 0.5
    assert f["shared"] == [{"channel": 0, "part": "mouth", "iou": 0.1}] and f["mouth"] == {"Smiling": 1,
                                                                                           "Mouth_Slightly_Open": 2}
    assert "Mouth_Slightly_Open" in fig4_roles(evidence[:1], channels, ["Smiling"], 2)["skipped"]


@pytest.mark.parametrize("kwargs, message", [({"quantile": 1.0}, "--quantile"), ({"quantile": 0}, "--quantile"),
                                             ({"threshold": 1.5}, "--threshold"), ({"max_images": 0}, "--max-images"),
                                             ({"top": 0}, "--top")])
def test_bad_settings_are_one_line(kwargs, message):
    with pytest.raises(HPNetError, match=message):
        DissectSettings(**kwargs)


# ---------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from hpnet.cli import main
    run = tmp_path_factory.mktemp("dissect") / "run"
    assert main(["train", "--dataset", "synthetic", "--image-size", "16", "--max-images", "64", "--attributes",
                 ",".join(NAMES), "--backbone", "strided", "--widths", "4,6,8", "--epochs", "1", "--quiet",
                 "--no-eval", "--out", str(run)]) == 0
    return run


def test_hpnet_dissect_writes_the_json_and_the_figure_and_the_report_shows_them(trained, capsys):
    code, out, err = run_cli(capsys, "dissect", trained, "--json", "--boot", "50", "--max-images", "32")
    assert code == 0, err
    printed = json.loads(out)
    stored = json.loads((trained / "dissect.json").read_text())
    assert printed == stored and stored["images"] == 32 and stored["split"] == "valid"
    assert {"parts", "channels", "consistency", "fig4"} <= set(stored)
    assert {"channel", "part", "iou", "iou_ci_low", "iou_ci_high"} <= set(stored["channels"][0])
    assert {"score", "chance"} <= set(stored["consistency"]) and len(stored["channels"]) == 8
    assert all(c["part"] in stored["parts"] + ["none"] for c in stored["channels"])
    assert (trained / stored["figures"]["roles"]).is_file()
    result = Run.open(trained).read(DissectResult)
    assert result.to_json() == stored
    code, out, _ = run_cli(capsys, "dissect", trained, "--boot", "50", "--max-images", "32", "--quiet")
    assert code == 0 and "channels have a face part" in out and "Fig. 4: top 5 channels of Smiling" in out
    assert run_cli(capsys, "report", trained)[0] == 0
    html = (trained / "report.html").read_text()
    assert "Channel roles" in html and "Fig. 4: Smiling and Mouth_Slightly_Open" in html


def test_the_roles_the_operations_see_are_those_dissect_names(trained):
    from hpnet.operations import read_view
    run = Run.open(trained)
    name, data = run.view_data(run.eval_split(), progress=False)
    view = read_view(run.model(), data, "run", max_images=32)
    result = dissect(run.model(), data, DissectSettings(max_images=32, n_boot=20))
    assert view.roles == tuple(c["part"] for c in result.channels) and view.parts == tuple(result.parts)


def test_bad_arguments_are_one_line(trained, capsys):
    one_line(*run_cli(capsys, "dissect", trained, "--quantile", "1.5")[::2], naming="--quantile")
    one_line(*run_cli(capsys, "dissect", trained / "nope")[::2], naming="nope")
    one_line(*run_cli(capsys, "dissect", trained, "--dataset", "celeba", "--root", trained / "nope")[::2],
             naming="nope")


def test_with_little_memory_features_are_recomputed_and_quantiles_sampled(monkeypatch):
    model, data = handset(32, 16)
    whole = dissect(model, data, DissectSettings(max_images=16, n_boot=20))
    monkeypatch.setattr("hpnet.analysis.dissect._ELEMENTS", 4096)      # 64 of 1,024 positions per image
    small = dissect(model, data, DissectSettings(max_images=16, n_boot=20))
    assert small.roles() == whole.roles() == {"background": [3], "mouth": [0], "none": [1, 2]}
    assert small.channels[0]["iou"] == whole.channels[0]["iou"]       # its threshold is 0 either way
