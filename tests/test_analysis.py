"""Fig. 4-6 and Table 4 analyses: channel ranking, attribute table, clustering, mask maps, a run."""
import json

import numpy as np
import pytest
import torch

from hpnet.analysis.attention import (AnalysisSettings, attribute_correlation_table, cluster_order, mask_maps,
                                      select_attributes, top_channels)
from hpnet.commands import analyse_run
from hpnet.data import DataSpec
from hpnet.errors import HPNetError
from hpnet.io import atomic_write_json
from hpnet.model import HPNet, ModelConfig

NAMES = ["Smiling", "Black_Hair", "Male"]


def tiny(seed: int = 0, **kw) -> HPNet:
    torch.manual_seed(seed)
    return HPNet(ModelConfig(NAMES, **{"widths": (4, 8, 8, 8), **kw})).eval()


def test_top_channels_rank_by_mean_mask_times_abs_weight():
    grid = torch.tensor([[0.9, 0.1, 0.5, 0.2],
                         [0.2, 0.2, 0.2, 0.2]])
    weights = torch.tensor([[0.1, 1.0, 1.0, -3.0],     # scores 0.09, 0.1, 0.5, 0.6
                            [1.0, -4.0, 2.0, 3.0]])    # scores 0.2, 0.8, 0.4, 0.6
    top = top_channels(grid, weights, k=3)
    assert top.dtype == torch.long
    assert top.tolist() == [[3, 2, 1], [1, 3, 2]]


def test_top_channels_ties_keep_lower_id_and_k_is_capped():
    top = top_channels(torch.ones(1, 3), torch.ones(1, 3), k=5)
    assert top.tolist() == [[0, 1, 2]]


def test_attribute_table_identical_rows_correlate_one_and_exclude_self():
    grid = torch.tensor([[1.0, 2.0, 3.0, 4.0],
                         [1.0, 2.0, 3.0, 4.0],
                         [4.0, 3.0, 2.0, 1.0],
                         [1.0, 3.0, 2.0, 4.0]])
    names = ["A", "B", "C", "D"]
    table = attribute_correlation_table(grid, names, top=2)
    assert [row["attribute"] for row in table] == names
    first = table[0]["top"]
    assert first[0]["name"] == "B" and first[0]["correlation"] == pytest.approx(1.0)
    assert all(t["name"] != "A" for t in first)
    assert len(first) == 2
    # C is A reversed: its best match is D (r = -0.8), then A and B (r = -1) with the tie to the lower index
    assert [t["name"] for t in table[2]["top"]] == ["D", "A"]
    assert [t["correlation"] for t in table[2]["top"]] == pytest.approx([-0.8, -1.0])


def test_attribute_table_top_is_capped_by_the_other_attributes():
    table = attribute_correlation_table(torch.rand(3, 6), ["A", "B", "C"], top=5)
    assert all(len(row["top"]) == 2 for row in table)


def test_cluster_order_is_a_permutation_grouping_two_blocks():
    rng = np.random.default_rng(0)
    C = 12
    blocks = rng.permutation(C)
    a, b = set(blocks[:5].tolist()), set(blocks[5:].tolist())
    corr = np.full((C, C), -0.2)
    for group in (a, b):
        for i in group:
            for j in group:
                corr[i, j] = 0.8 + 0.05 * rng.random()
    corr = (corr + corr.T) / 2
    np.fill_diagonal(corr, 1.0)
    order = cluster_order(torch.tensor(corr))
    assert sorted(order) == list(range(C))
    first = set(order[:5]) if order[0] in a else set(order[:7])
    assert first in (a, b)
    assert cluster_order(corr) == order  # deterministic, numpy or torch


def test_cluster_order_handles_nan_and_one_channel():
    corr = np.eye(4)
    corr[0, 1] = corr[1, 0] = np.nan
    assert sorted(cluster_order(corr)) == [0, 1, 2, 3]
    assert cluster_order(np.ones((1, 1))) == [0]


@pytest.mark.parametrize("backbone", ["paper", "strided"])
def test_mask_maps_shapes_and_range(backbone):
    model = tiny(backbone=backbone)
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    channels = torch.tensor([[0, 3], [7, 1]])
    maps = mask_maps(model, images, [2, 0], channels)
    assert maps.shape == (2, 2, 2, 16, 16)
    assert maps.min() >= 0 and maps.max() <= 1
    if backbone == "paper":  # no resampling: exactly the model's masks
        z = model.features(images[:1].float() / 255)
        assert torch.allclose(maps[0, 0, 0], model.masks(z)[0, 2, 0], atol=1e-6)


def test_mask_maps_needs_attention_heads():
    with pytest.raises(HPNetError, match="linear heads"):
        mask_maps(tiny(head="linear"), torch.zeros(1, 3, 16, 16, dtype=torch.uint8), [0], torch.tensor([[0]]))


def test_select_attributes():
    assert select_attributes(["Male", "Smiling", "Young", "Blond_Hair", "Bald", "X"], None) == [1, 3, 0, 2]
    assert select_attributes(NAMES, ["Male", "0"]) == [2, 0]
    with pytest.raises(HPNetError, match="not an attribute"):
        select_attributes(NAMES, ["Wearing_Hat"])


def make_run(path, **model_kw):
    model = tiny(**model_kw)
    model.save(path)
    spec = DataSpec(dataset="synthetic", image_size=16, max_images=48, attributes=NAMES)
    atomic_write_json({"model": model.config.to_dict(), "data": spec.to_dict(), "train": {},
                       "history": [], "train_positive_rate": [0.5] * 3}, path / "run.json")
    return model


def test_analyse_run_writes_json_and_figures(tmp_path):
    backbone = "strided"  # masks on a 2x2 map, upsampled for Fig. 4; the paper backbone: mask_maps tests
    make_run(tmp_path, backbone=backbone)
    result = analyse_run(tmp_path, AnalysisSettings(samples=2, max_images=32), progress=False)
    saved = json.loads((tmp_path / "analysis.json").read_text())
    assert saved["backbone"] == backbone and saved["attribute_names"] == NAMES
    assert np.asarray(saved["mean_mask_grid"]).shape == (3, 8)
    assert np.asarray(saved["channel_correlation"]).shape == (8, 8)
    assert sorted(saved["cluster_order"]) == list(range(8))
    assert [row["attribute"] for row in saved["attribute_table"]] == NAMES
    assert set(saved["top_channels"]) == set(NAMES) and all(len(v) == 3 for v in saved["top_channels"].values())
    assert saved["images"]["mean_mask_grid"] == 32 and saved["images"]["fig4_samples"] == [0, 1]
    assert saved["fig4_attributes"] == ["Smiling", "Black_Hair", "Male"]
    for name in ("fig4_mask_maps.png", "fig5_mean_masks.png", "fig6_channel_correlation.png"):
        assert (tmp_path / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| Smiling |" in (tmp_path / "figures" / "table4_attribute_correlation.md").read_text()
    assert result.figures["fig4"].endswith("fig4_mask_maps.png") and saved == result.to_json()
    assert not list(tmp_path.glob("**/*.tmp"))


def test_analyse_run_refuses_linear_heads(tmp_path):
    make_run(tmp_path, head="linear")
    with pytest.raises(HPNetError, match="linear heads"):
        analyse_run(tmp_path, progress=False)
