"""Roles wherever channels appear: the page's API (its grid's roles, the channel view, where a channel
fires beside its mask), and Fig. 4 and 6 named by roles after ``hpnet analyse`` and ``hpnet dissect``
in either order."""
from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
import torch
from PIL import Image

from dissecthelp import NAMES, handset
from hpnet.analysis.dissect import DissectSettings
from hpnet.commands import analyse_run, dissect_run, report_run, train_run
from hpnet.data import DataSpec
from hpnet.data.synthetic import PARTS
from hpnet.errors import HPNetError
from hpnet.hitl import Workbench, fires
from hpnet.hitl.app import create_app
from hpnet.hitl.network import Network
from hpnet.model import HPNet, ModelConfig
from hpnet.report import figures as F
from hpnet.report.roles import part_colour
from hpnet.results import DissectResult
from hpnet.run import Run
from hpnet.train import TrainConfig

PORT = 8124
BASE = {"base_url": f"http://127.0.0.1:{PORT}"}
NET = "hand (attention)"


def bench_of(model: HPNet, data, name: str = NET) -> Workbench:
    return Workbench([Network(name, model, data, data, 32, 32, 16)], data, "hand", seed=0)


@pytest.fixture(scope="module")
def hand():
    """A workbench over the hand-set extractor (channel 0 fires exactly on the mouth, 1 is constant,
    2 pixel noise, 3 the background) on 32 synthetic faces of 32 pixels, and their data."""
    model, data = handset(32, 32)
    return bench_of(model, data), data


@pytest.fixture
def client(hand, tmp_path):
    return create_app(hand[0], port=PORT, log=tmp_path / "trials.jsonl", n_boot=50).test_client()


def test_the_grid_and_the_channel_view_carry_the_roles(hand):
    bench, _ = hand
    roles = bench.overview()["roles"][NET]
    assert roles["role"] == ["mouth", "none", "none", "background"] and roles["parts"] == list(PARTS)
    assert roles["iou"][0] >= 0.75 and roles["iou"][1] == 0
    mouth, constant = bench.channel_view(0), bench.channel_view(1)
    assert mouth["role"] == "mouth" and mouth["has_masks"]
    assert mouth["fires"]["best_part"] == "mouth" and mouth["fires"]["iou"] == pytest.approx(roles["iou"][0])
    assert {k: mouth["fires"][k] for k in ("quantile", "threshold", "images")} == {"quantile": 0.95, "threshold": 0.06,
                                                                                  "images": 32}
    assert constant["role"] == "none" and constant["fires"]["iou"] == 0


def test_where_a_channel_fires_is_its_region_and_nothing_else(hand):
    bench, data = hand
    images = list(range(8))
    maps = bench.channel_maps(0, images, "Smiling")
    mouth = data.part_masks(images)[:, PARTS.index("mouth")]
    assert maps.images == images and maps.activation.shape == maps.fires.shape == maps.mask.shape == (8, 32, 32)
    assert maps.threshold == 0.0                                    # the mouth covers less than the top 5%
    assert torch.equal(maps.fires, data.images[:8, 0] > 0)         # where the red channel shows the mouth
    assert maps.fires.sum() > 50 and not (maps.fires & (mouth == 0)).any()
    assert (maps.activation[mouth == 0] == 0).all() and (maps.activation[maps.fires] > 0.1).all()
    constant = bench.channel_maps(1, images)                       # fires nowhere, its activation is T_c / 2 T_c
    assert not constant.fires.any() and torch.allclose(constant.activation, torch.tensor(0.5))
    per = torch.stack([bench.channel_maps(1, images, a).mask for a in NAMES])
    torch.testing.assert_close(constant.mask, per.mean(0), atol=1e-6, rtol=0)   # no attribute: the mean mask
    assert (per >= 0).all() and (per <= 1).all()


def test_without_face_parts_a_channel_still_fires_by_the_same_rule(monkeypatch):
    model, data = handset(32, 32)
    monkeypatch.setattr("hpnet.operations.view.has_parts", lambda data: False)
    bench = bench_of(model, data)
    assert bench.overview()["roles"] == {NET: None} and bench.channel_view(0)["fires"] is None
    assert torch.equal(bench.channel_maps(0, [0, 1]).fires, data.images[:2, 0] > 0)   # T from the cached images


def png(response) -> np.ndarray:
    assert response.status_code == 200 and response.mimetype == "image/png"
    return np.asarray(Image.open(BytesIO(response.data)).convert("RGB")).astype(int)


def test_the_map_route_draws_the_firing_region_over_the_image(hand, client):
    bench, data = hand
    shown = png(client.get("/api/channel/0/fires/3.png", **BASE))
    scale = fires.SHOWN // 32
    grow = lambda a: np.repeat(np.repeat(np.asarray(a), scale, 0), scale, 1)  # noqa: E731
    assert shown.shape == (32 * scale, 32 * scale, 3)
    image, region = grow(data.images[3].permute(1, 2, 0).numpy()).astype(int), grow(data.images[3, 0] > 0)
    outline = (shown == fires.OUTLINE).all(-1)
    assert outline.sum() > 20 and region[outline].all()             # the outline is the region's border
    np.testing.assert_array_equal(shown[~region], image[~region])   # nothing drawn where the channel is silent
    inside = region & ~outline
    assert (shown[inside][:, 0] >= image[inside][:, 0]).all() and (shown[inside][:, 2] <= image[inside][:, 2]).all()
    mask = png(client.get("/api/channel/0/mask/3.png?attribute=Eyeglasses", **BASE))
    maps = bench.channel_maps(0, [3], "Eyeglasses")
    expected = np.asarray(Image.open(BytesIO(fires.overlay_png(data.images[3], maps.mask[0]))))
    np.testing.assert_array_equal(mask, expected)
    assert png(client.get("/api/channel/0/mask/3.png", **BASE)).shape == shown.shape     # the mean mask


@pytest.mark.parametrize("path, code, message", [
    ("/api/channel/4/fires/0.png", 400, "channel must be an id in 0..3, got 4"),
    ("/api/channel/0/fires/32.png", 404, "no image 32"),
    ("/api/channel/0/mask/0.png?attribute=Nose", 400, "unknown attribute \"Nose\""),
    ("/api/channel/0/fires/0.png?image=2", 400, "unknown query parameter 'image'"),
    ("/api/channel/0/edges/0.png", 404, "no such page or API"),
    ("/api/channel/0/fires/-1.png", 404, "no such page or API"),
])
def test_bad_map_requests_are_one_line(client, path, code, message):
    response = client.get(path, **BASE)
    assert response.status_code == code
    error = response.json["error"]
    assert message in error and "\n" not in error


def test_a_plain_cnn_shows_where_channels_fire_but_has_no_mask(tmp_path):
    model, data = handset(32, 32)
    plain = HPNet(ModelConfig(NAMES, backbone="paper", widths=(4,), dilations=(1,), head="linear")).eval()
    plain.extractor.load_state_dict(model.extractor.state_dict())
    bench = bench_of(plain, data, "hand (linear)")
    assert bench.channel_view(0)["has_masks"] is False and bench.channel_maps(0, [0]).mask is None
    assert bench.channel_map_png(0, 0, "fires")[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(HPNetError, match="no attention masks"):
        bench.channel_map_png(0, 0, "mask")
    client = create_app(bench, port=PORT, log=tmp_path / "trials.jsonl").test_client()
    refused = client.get("/api/channel/0/mask/0.png", **BASE)
    assert refused.status_code == 400 and "has no attention masks (plain CNN)" in refused.json["error"]


# ---------------------------------------------------------------------------- Fig. 4 and 6

ROLES = ["hair", "mouth", "none", "eyes", "mouth", "background", "none", "nose"]


def test_fig4_names_its_channels_by_their_roles_when_given():
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    maps, ids = torch.rand(2, 2, 3, 16, 16), torch.tensor([[1, 2, 3], [4, 5, 6]])
    texts = lambda fig: {t.get_text() for t in fig.axes[0].texts}  # noqa: E731
    named = F.fig4_mask_maps(images, maps, NAMES[:2], ids, roles=ROLES)
    assert {"ch 1 mouth", "ch 2", "ch 3 eyes", "ch 4 mouth", "ch 5 background", "ch 6"} <= texts(named)
    assert "each named by the face part where it fires" in named._suptitle.get_text()
    plain = texts(F.fig4_mask_maps(images, maps, NAMES[:2], ids))
    assert {"ch 1", "ch 2", "ch 3", "ch 4", "ch 5", "ch 6"} <= plain and not any("mouth" in t for t in plain)


def test_fig6_names_its_channels_and_shows_their_parts_when_given():
    corr, order = torch.eye(8), [7, 6, 5, 4, 3, 2, 1, 0]
    fig = F.fig6_channel_correlation(corr, order, ROLES)
    ticks = lambda ax: [t.get_text() for t in ax.get_xticklabels()]  # noqa: E731
    assert ticks(fig.axes[0]) == ["0 hair", "1 mouth", "2", "3 eyes", "4 mouth", "5 background", "6", "7 nose"]
    assert ticks(fig.axes[1])[:3] == ["7 nose", "6", "5 background"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "background (1)", "hair (1)", "nose (1)", "mouth (2)", "eyes (1)", "no one part (2)"]
    strip = fig.axes[1].child_axes[0].images[0].get_array()          # the part colours in the panel's order
    assert strip.shape == (1, 8, 3) and np.allclose(strip[0, 0], part_colour("nose"))
    plain = F.fig6_channel_correlation(corr, order)
    assert ticks(plain.axes[0]) == [str(c) for c in range(8)] and not plain.legends


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("views") / "run"
    spec = DataSpec(dataset="synthetic", image_size=16, max_images=64, attributes=NAMES)
    train_run(run, spec, {"backbone": "strided", "widths": (4, 6, 8)}, TrainConfig(epochs=1, batch_size=32),
              progress=False)
    return run


def test_analyse_and_dissect_in_either_order_name_the_channels_of_fig4_and_fig6(trained, monkeypatch):
    drawn, real = [], F.write_analysis_figures

    def spy(run_dir, result, images, maps, roles=None):
        drawn.append((roles, maps.clone()))
        return real(run_dir, result, images, maps, roles)

    monkeypatch.setattr("hpnet.commands.analyse.write_analysis_figures", spy)
    settings = DissectSettings(max_images=32, n_boot=20)
    roles = [c["part"] for c in dissect_run(trained, settings, progress=False).channels]
    assert drawn == [] and not (trained / "figures" / "fig4_mask_maps.png").exists()   # nothing to redraw yet
    analyse_run(trained, progress=False)                    # after dissect: named
    assert drawn[-1][0] == roles
    (trained / DissectResult.FILE).unlink()
    analyse_run(trained, progress=False)                    # without a dissection: as before
    assert drawn[-1][0] is None
    dissect_run(trained, settings, progress=False)          # before dissect: dissect redraws them named
    assert drawn[-1][0] == roles and len(drawn) == 3
    torch.testing.assert_close(drawn[-1][1], drawn[-2][1])  # the same Fig. 4 maps, recomputed
    analysis = Run.open(trained).read(F.AnalysisResult)
    top = analysis.top_channels[analysis.fig4_attributes[0]]
    html = report_run(trained).read_text()
    assert ", ".join(f"{c} ({roles[c]})" for c in top) in html and "and where each fires" in html
