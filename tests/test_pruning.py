"""Semantic channel pruning: correlation, orders, curves, physical pruning, the run-level command."""
import json

import numpy as np
import pytest
import torch

from hpnet.analysis.correlation import channel_correlation, contribution_correlation
from hpnet.analysis.masks import mean_mask_grid
from hpnet.data import DataSpec, load_split
from hpnet.data.base import ArrayDataset
from hpnet.errors import HPNetError
from hpnet.model import HEADS, HPNet, ModelConfig, count_macs, count_parameters
from hpnet.commands import evaluate_run, prune_run
from hpnet.commands.evaluate import EvalSettings
from hpnet.evaluation import accuracy_table, predict
from hpnet.ops.pruning import (SCORERS, CurveSettings, HeadFit, PruneSettings, ScanInputs, ScanSettings,
                               attention_order, default_grid, filter_l1, l1_order, masked_model, mean_accuracy,
                               method_orders, prune_physical, pruning_curves, random_order, reconstruct_heads,
                               semantic_order)
from hpnet.run import Run
from hpnet.train import TrainConfig, fit

NAMES = ["Smiling", "Male", "Eyeglasses"]
CONFIGS = {
    "paper": dict(backbone="paper", widths=(4, 6, 6, 8)),
    "strided": dict(backbone="strided", widths=(4, 6, 6, 8)),
    "linear": dict(backbone="paper", widths=(4, 6, 6, 8), head="linear"),
    "naive": dict(backbone="paper", widths=(4, 6, 6, 8), head_impl="naive"),
    "channel": dict(backbone="strided", widths=(4, 6, 6, 8), head="channel"),
    "context": dict(backbone="paper", widths=(4, 6, 6, 8), head="context"),
}


# one model per head family: the paper's heads on the paper's backbone, any other family on the strided one
HEAD_KINDS = ["paper" if head == "attention" else head for head in HEADS.names()]


def tiny(kind: str = "paper", seed: int = 0) -> HPNet:
    """A tiny model of a CONFIGS entry, or of the head family ``kind`` on the strided backbone."""
    torch.manual_seed(seed)
    model = HPNet(ModelConfig(NAMES, **CONFIGS.get(kind, dict(backbone="strided", widths=(4, 6, 6, 8), head=kind))))
    for m in model.modules():  # non-trivial BatchNorm statistics, so that eval mode is tested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def random_data(n: int = 24, size: int = 16, seed: int = 0) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    targets = torch.randint(0, 2, (n, len(NAMES)), generator=g).float()
    return ArrayDataset(images, targets, NAMES)


def plain_accuracy(model: HPNet, data: ArrayDataset) -> torch.Tensor:
    """Per-attribute accuracy of the model's own forward pass, (K,)."""
    table = accuracy_table(predict(model, data), data.targets, NAMES, [0.5] * len(NAMES))
    return torch.tensor([row["accuracy"] for row in table["per_attribute"]])


# ---------------------------------------------------------------------------- correlation


@pytest.mark.parametrize("kind", ["paper", "strided"])
def test_correlation_equals_numpy_corrcoef(kind):
    model, data = tiny(kind), random_data(13)
    corr = channel_correlation(model, data, batch_size=4, max_images=11)  # several uneven batches
    with torch.no_grad():
        z = model.features(data.images[:11].float() / 255)
    stacked = z.transpose(0, 1).reshape(z.shape[1], -1).double().numpy()  # (C, positions)
    np.testing.assert_allclose(corr.numpy(), np.corrcoef(stacked), atol=1e-5)


def test_correlation_of_a_pruned_channel_is_zero_off_the_diagonal():
    model, data = tiny(), random_data(6)
    keep = torch.ones(8)
    keep[2] = 0
    model.set_channel_keep(keep)
    corr = channel_correlation(model, data)
    assert torch.isfinite(corr).all()
    assert corr[2, 2] == 1 and (corr[2, torch.arange(8) != 2] == 0).all()
    assert torch.allclose(corr, corr.T) and (corr.diagonal() == 1).all()


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_contributions_add_up_to_the_logits_and_correlate_like_numpy(kind):
    model, data = tiny(kind), random_data(13)
    corr = contribution_correlation(model, data, batch_size=4, max_images=11)
    with torch.no_grad():
        x = data.images[:11].float() / 255
        part = model.heads.pooled(*model.encode(x)) * model.heads.weight           # (B, K, C)
        torch.testing.assert_close(part.sum(-1) + model.heads.bias, model(x).logits, rtol=1e-5, atol=1e-5)
    stacked = part.reshape(-1, 8).T.double().numpy()                              # (C, B*K)
    np.testing.assert_allclose(corr.numpy(), np.corrcoef(stacked), atol=1e-5)


# ---------------------------------------------------------------------------- orders


def hand_made() -> tuple[torch.Tensor, torch.Tensor]:
    """4 channels; pairs by correlation: (0,1) .9, (2,3) .8, (0,2) .7, (1,3) .6, (0,3) .5, (1,2) .4."""
    corr = torch.eye(4)
    for (i, j), r in {(0, 1): .9, (2, 3): .8, (0, 2): .7, (1, 3): .6, (0, 3): .5, (1, 2): .4}.items():
        corr[i, j] = corr[j, i] = r
    return corr, torch.tensor([4.0, 1.0, 3.0, 2.0])


def test_semantic_order_lower_rule_by_hand():
    # (0,1): prune 1 (L1 1 < 4); (2,3): prune 3 (2 < 3); (0,2): prune 2 (3 < 4); 0 is left
    assert semantic_order(*hand_made(), rule="lower") == [1, 3, 2, 0]


def test_semantic_order_higher_rule_by_hand():
    # (0,1): prune 0; (2,3): prune 2; (0,2): 0 already pruned, skip; (1,3): prune 3 (2 > 1); 1 is left
    assert semantic_order(*hand_made(), rule="higher") == [0, 2, 3, 1]


def test_semantic_order_signed_by_default_absolute_on_request():
    corr = torch.tensor([[1.0, -0.9, 0.5], [-0.9, 1.0, 0.1], [0.5, 0.1, 1.0]])
    l1 = torch.tensor([3.0, 1.0, 2.0])
    assert semantic_order(corr, l1) == [2, 1, 0]                 # (0,2) first, then (0,1)
    assert semantic_order(corr, l1, use_abs=True) == [1, 2, 0]   # (0,1) first, then (0,2)


@pytest.mark.parametrize("C", [1, 2, 5, 16])
def test_semantic_order_lists_every_channel_once_and_is_deterministic(C):
    g = torch.Generator().manual_seed(C)
    a = torch.randn(C, 3 * C, generator=g)
    corr = torch.corrcoef(a) if C > 1 else torch.ones(1, 1)
    l1 = torch.rand(C, generator=g)
    for rule in ("lower", "higher"):
        order = semantic_order(corr, l1, rule)
        assert sorted(order) == list(range(C))
        assert order == semantic_order(corr.clone(), l1.clone(), rule)
    # all ties: pairs in (i, j) order, the later channel pruned on equal norms
    assert semantic_order(torch.ones(C, C), torch.ones(C)) == list(range(1, C)) + [0]


def test_semantic_order_rejects_bad_input():
    with pytest.raises(HPNetError, match="--rule"):
        semantic_order(torch.eye(3), torch.ones(3), rule="middle")
    with pytest.raises(HPNetError, match=r"\(C, C\)"):
        semantic_order(torch.eye(3), torch.ones(4))


def test_baseline_orders():
    model = tiny()
    l1 = filter_l1(model)
    assert torch.allclose(l1, model.extractor.last_conv.weight.abs().sum((1, 2, 3)))
    assert l1[l1_order(model)].diff().ge(0).all()
    grid = torch.tensor([[0.3, 0.1, 0.9], [0.5, 0.1, 0.0]])      # channel means .4, .1, .45
    assert attention_order(grid) == [1, 0, 2]
    assert random_order(8, 3) == random_order(8, 3) != random_order(8, 4)
    assert sorted(random_order(8, 3)) == list(range(8))
    assert default_grid(128) == list(range(0, 129, 8))
    assert {0, 3, 7}.issubset(default_grid(7)) and default_grid(4) == [0, 1, 2, 3, 4]


def test_method_orders_scan_the_chosen_correlation_and_report_the_other():
    model = tiny()
    g = torch.Generator().manual_seed(1)
    a, b = (torch.corrcoef(torch.randn(8, 30, generator=g)) for _ in range(2))
    given = {"contributions": a, "features": b}
    orders, skipped = method_orders(ScanInputs(model, ScanSettings(seeds=1), correlations=given), ["semantic"])
    l1 = filter_l1(model)
    assert orders == {"semantic": semantic_order(a, l1), "semantic_higher": semantic_order(a, l1, "higher"),
                      "semantic_features": semantic_order(b, l1)} and skipped == {}
    swapped, _ = method_orders(ScanInputs(model, ScanSettings(both_rules=False, correlation="features"),
                                          correlations=given), ["semantic"])
    assert swapped == {"semantic": semantic_order(b, l1), "semantic_contributions": semantic_order(a, l1)}
    with pytest.raises(HPNetError, match="--correlation"):
        method_orders(ScanInputs(model, ScanSettings(), correlations={"features": b}), ["semantic"])
    with pytest.raises(HPNetError, match="--correlation"):
        ScanSettings(correlation="weights")
    with pytest.raises(HPNetError, match="--method"):
        PruneSettings(methods=["semantic", "magic"])
    orders, _ = method_orders(ScanInputs(model, ScanSettings(seeds=2), correlations={}), ["random", "l1"])
    assert set(orders) == {"random", "l1"} and len(orders["random"]) == 2


@pytest.mark.parametrize("kind", HEAD_KINDS)
@pytest.mark.parametrize("method", SCORERS.names())
def test_every_scorer_orders_every_channel_once_or_says_why_it_does_not_apply(method, kind):
    model = tiny(kind)
    orders, skipped = method_orders(ScanInputs(model, ScanSettings(seeds=2, corr_images=12, batch_size=8),
                                               train=random_data(12)), [method])
    assert bool(orders) != bool(skipped) and set(skipped) <= {method}
    if skipped:
        assert skipped[method] and "\n" not in skipped[method]
    for name, order in orders.items():
        assert name == method or name.startswith(f"{method}_"), name
        for one in (order if order and isinstance(order[0], list) else [order]):
            assert sorted(one) == list(range(8)), (name, one)
        assert method_orders(ScanInputs(model, ScanSettings(seeds=2, corr_images=12, batch_size=8),
                                        train=random_data(12)), [method])[0][name] == order        # deterministic


def test_attention_scorer_is_skipped_for_linear_heads_with_a_reason():
    orders, skipped = method_orders(ScanInputs(tiny("linear"), ScanSettings()), ["l1", "attention"])
    assert set(orders) == {"l1"} and skipped == {"attention": "the model has linear heads (no attention masks)"}


def test_mean_mask_grid_equals_the_mean_of_the_full_masks():
    model, data = tiny(), random_data(10)
    grid = mean_mask_grid(model, data, batch_size=4, chunk_mb=0)  # one image at a time
    with torch.no_grad():
        full = model.masks(model.features(data.images.float() / 255))
    assert grid.shape == (3, 8)
    torch.testing.assert_close(grid, full.double().mean(dim=(0, 3, 4)), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------- curves


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_pruning_curves_equal_masking_directly(kind):
    model, data = tiny(kind), random_data(20)
    order = [5, 2, 7, 0, 1, 6, 3, 4]
    orders = {"semantic": order, "random": [random_order(8, s) for s in range(3)]}
    grid = [0, 2, 4, 8]
    result = pruning_curves(model, data, orders, grid, batch_size=8)
    masked = pruning_curves(model, data, orders, grid, batch_size=8, physical=False)
    assert result["methods"] == masked["methods"]
    plain = plain_accuracy(model, data)
    assert result["methods"]["semantic"][0] == [0, pytest.approx(float(plain.mean()), abs=1e-6)]
    for g, p in enumerate(grid):  # each point equals the model with those channels masked
        keep = torch.ones(8)
        keep[order[:p]] = 0
        model.set_channel_keep(keep)
        expected = plain_accuracy(model, data)
        torch.testing.assert_close(torch.tensor(result["per_attribute"]["semantic"][g], dtype=torch.float64), expected.double(),
                                   rtol=0, atol=1e-6)
    model.set_channel_keep(torch.ones(8))
    assert [row[0] for row in result["methods"]["random"]] == grid
    assert all(len(row) == 3 for row in result["methods"]["random"])
    assert result["methods"]["random"][0][2] == 0.0                  # nothing pruned: no spread
    assert result["grid"] == grid and result["channels"] == 8 and result["images"] == 20
    assert result["orders"]["semantic"] == order and len(result["orders"]["random"]) == 3
    every = [order, *orders["random"]]
    assert result["configurations"] == len({tuple(sorted(o[:p])) for o in every for p in grid}) < 4 * 4


def test_head_fit_recovers_known_classifiers():
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(3, 5, generator=g), torch.randn(3, generator=g)
    fit = HeadFit(3, 5, ridge=0.0)
    for _ in range(3):                                   # accumulated over batches
        pooled = torch.randn(20, 3, 5, generator=g)
        fit.add(pooled, (pooled * w).sum(-1) + b)
    got_w, got_b = fit.solve()
    torch.testing.assert_close(got_w, w, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_b, b, rtol=1e-5, atol=1e-5)
    empty = HeadFit(3, 0)                                # no channel left: the mean logit
    empty.add(torch.zeros(4, 3, 0), torch.tensor([[1.0, 2, 3], [3, 2, 1], [1, 2, 3], [3, 2, 1]]))
    assert empty.solve()[1].tolist() == [2.0, 2.0, 2.0]
    with pytest.raises(HPNetError, match="no images"):
        HeadFit(3, 2).solve()


def test_reconstruction_brings_the_pruned_logits_closer_to_the_original():
    model, data = tiny(), random_data(40)
    kept = [0, 2, 3, 6]
    plain = prune_physical(model, kept)
    rebuilt = reconstruct_heads(prune_physical(model, kept), model, kept, data, batch_size=16)
    x = data.images.float() / 255
    with torch.no_grad():
        target = model(x).logits
        err_plain = (plain(x).logits - target).pow(2).mean()
        err_rebuilt = (rebuilt(x).logits - target).pow(2).mean()
    assert err_rebuilt < 0.5 * err_plain
    for name in ("mask_weight", "mask_bias"):                                  # only w_k, b_k change
        assert torch.equal(getattr(rebuilt.heads, name), getattr(plain.heads, name))
    assert torch.equal(rebuilt.features(x), plain.features(x))


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_reconstructed_physical_model_equals_the_masked_model_with_its_classifiers(kind):
    model, data = tiny(kind), random_data(30)
    kept = [1, 3, 4, 7]
    small = reconstruct_heads(prune_physical(model, kept), model, kept, data, batch_size=16)
    masked = masked_model(model, kept, small)
    assert masked.channel_keep.tolist() == [0, 1, 0, 1, 1, 0, 0, 1]
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(small(x).logits, masked(x).logits, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(small(x).logits, masked_model(model, kept)(x).logits)
    assert model.channel_keep.eq(1).all()                                 # the original is untouched


def test_pruning_curves_with_reconstruction_match_the_reconstructed_models():
    model, data, fit_data = tiny(), random_data(20), random_data(30, seed=1)
    order = [5, 2, 7, 0, 1, 6, 3, 4]
    grid = [0, 3, 6, 8]
    plain = pruning_curves(model, data, {"s": order}, grid, batch_size=8)
    result = pruning_curves(model, data, {"s": order}, grid, batch_size=8, fit=fit_data, fit_images=24)
    assert result["reconstructed"] and result["fit_images"] == 24 and not plain["reconstructed"]
    assert result["methods_heads_unchanged"] == plain["methods"]
    assert result["methods"]["s"][0] == plain["methods"]["s"][0]       # nothing pruned: unchanged
    for g, p in enumerate(grid[1:-1], start=1):
        kept = order[p:]
        small = reconstruct_heads(prune_physical(model, kept), model, kept, fit_data, 8, 24)
        assert result["methods"]["s"][g][1] == pytest.approx(mean_accuracy(small, data), abs=1e-6)


def test_pruning_curves_run_the_extractor_once_per_batch():
    model, data = tiny(), random_data(20)
    calls = []
    model.extractor.register_forward_hook(lambda *args: calls.append(1))
    orders = {"a": list(range(8)), "b": [random_order(8, s) for s in range(4)]}
    pruning_curves(model, data, orders, default_grid(8), batch_size=8)
    assert len(calls) == 3                                           # 20 images in batches of 8


def test_pruning_curves_reject_bad_orders_and_grids():
    model, data = tiny(), random_data(4)
    with pytest.raises(HPNetError, match="each of the 8 channels once"):
        pruning_curves(model, data, {"x": [0, 1, 2]}, [0])
    with pytest.raises(HPNetError, match="grid"):
        pruning_curves(model, data, {"x": list(range(8))}, [0, 9])


# ---------------------------------------------------------------------------- physical pruning


@pytest.mark.parametrize("kind", list(CONFIGS) + [k for k in HEAD_KINDS if k not in CONFIGS])
def test_physical_pruning_equals_the_masked_model(kind):
    model, x = tiny(kind), torch.rand(3, 3, 16, 16)
    keep = [6, 1, 3, 4]
    small = prune_physical(model, keep)
    assert small.config.widths[-1] == 4 and small.config.widths[:-1] == model.config.widths[:-1]
    assert small.features(x).shape[1] == 4 and not small.training
    mask = torch.zeros(8)
    mask[keep] = 1
    model.set_channel_keep(mask)
    with torch.no_grad():
        torch.testing.assert_close(small(x).logits, model(x).logits, rtol=1e-5, atol=1e-5)
    assert count_parameters(small) < count_parameters(model)
    assert count_macs(small, 16) < count_macs(model, 16)


def test_physical_pruning_keeps_the_transform_and_old_keep_values(tmp_path):
    model, x = tiny(), torch.rand(2, 3, 16, 16)
    model.set_transform(torch.tensor([2.0, 1.0, 4.0]), torch.tensor([0.2, 0.0, 0.5]))
    old_keep = torch.tensor([1.0, 0, 1, 1, 1, 0, 1, 1])
    model.set_channel_keep(old_keep)
    small = prune_physical(model, torch.tensor([0, 1, 2, 7]))
    assert small.channel_keep.tolist() == [1.0, 0.0, 1.0, 1.0]
    assert small.heads.transform_n.tolist() == [2.0, 1.0, 4.0]
    small.save(tmp_path)
    again = HPNet.load(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(again(x).logits, small(x).logits)
        model.set_channel_keep(old_keep * torch.tensor([1.0, 1, 1, 0, 0, 0, 0, 1]))
        torch.testing.assert_close(again(x).logits, model(x).logits, rtol=1e-5, atol=1e-5)


def test_physical_pruning_rejects_bad_channel_lists():
    model = tiny()
    for keep, message in (([], "at least one"), ([1, 1], "twice"), ([0, 8], "0..7")):
        with pytest.raises(HPNetError, match=message):
            prune_physical(model, keep)


# ---------------------------------------------------------------------------- a run folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    spec = DataSpec(dataset="synthetic", image_size=16, max_images=64, attributes=NAMES)
    torch.manual_seed(0)
    model = HPNet(ModelConfig(NAMES, widths=(4, 6, 6, 8)))
    cfg = TrainConfig(epochs=1, batch_size=32, amp=False, device="cpu", num_workers=0)
    folder = tmp_path_factory.mktemp("run")
    fit(model, load_split(spec, "train", False), load_split(spec, "valid", False), cfg, folder,
        data_spec=spec, progress=False)
    return folder


def test_prune_run_writes_the_curves_and_a_working_smaller_run(run_dir, tmp_path):
    result = prune_run(run_dir, PruneSettings(scan=ScanSettings(seeds=2), curves=CurveSettings(grid=[0, 4, 8]),
                                              keep=3, save=tmp_path / "small"),
                       progress=False)
    stored = json.loads((run_dir / "pruning.json").read_text())
    assert stored["methods"] == json.loads(json.dumps(result.methods)) and stored == result.to_json()
    methods = set(SCORERS.names()) | {"semantic_higher", "semantic_features"}      # the semantic scorer's variants
    assert set(stored["methods"]) == set(stored["methods_heads_unchanged"]) == methods
    assert stored["rule"] == "lower" and stored["grid"] == [0, 4, 8] and stored["channels"] == 8
    assert stored["correlation"] == "contributions" and stored["reconstructed"] and stored["fit_images"] == 64
    assert stored["split"] == "test" and stored["images"] == 64
    assert 0.0 < stored["majority_baseline"] <= 1.0
    base = stored["methods"]["semantic"][0][1]
    assert all(rows[0][1] == pytest.approx(base) for rows in stored["methods"].values())
    physical = stored["physical"]
    assert physical["kept_channels"] == sorted(stored["orders"]["semantic"][-3:])
    assert physical["params_after"] < physical["params_before"]
    assert physical["macs_after"] < physical["macs_before"]
    assert physical["latency_s_after"] > 0 and physical["accuracy_before"] == pytest.approx(base)
    assert physical["reconstructed"] and physical["max_abs_logit_diff_vs_masked"] < 1e-5

    small = Run.open(tmp_path / "small").model()
    record = json.loads((tmp_path / "small" / "run.json").read_text())
    assert small.config.channels == 3 and record["kept_channels"] == physical["kept_channels"]
    assert record["model"]["widths"][-1] == 3 and record["data"]["dataset"] == "synthetic"
    evaluated = evaluate_run(tmp_path / "small", EvalSettings(write=False), progress=False)
    assert evaluated.mean_accuracy == pytest.approx(physical["accuracy_after"])
    assert not list((tmp_path / "small").glob("eval_*.json"))


def test_prune_run_rejects_bad_physical_arguments_before_any_work(run_dir):
    with pytest.raises(HPNetError, match="--keep"):
        prune_run(run_dir, PruneSettings(keep=9), progress=False)
    with pytest.raises(HPNetError, match="holds a trained run"):
        prune_run(run_dir, PruneSettings(keep=4, save=run_dir), progress=False)
    with pytest.raises(HPNetError, match="--save needs --keep"):
        prune_run(run_dir, PruneSettings(save=run_dir.parent / "x"), progress=False)
    with pytest.raises(HPNetError, match="--correlation"):
        prune_run(run_dir, PruneSettings(scan=ScanSettings(correlation="weights")), progress=False)


def test_prune_run_without_reconstruction_keeps_the_heads(run_dir, tmp_path):
    result = prune_run(run_dir, PruneSettings(methods=["semantic"], scan=ScanSettings(correlation="features"),
                                              curves=CurveSettings(grid=[0, 4], reconstruct=False),
                                              keep=4, save=tmp_path / "small"), progress=False)
    assert not result.reconstructed and "methods_heads_unchanged" not in result.to_json()
    assert set(result.methods) == {"semantic", "semantic_higher", "semantic_contributions"}
    model, small = Run.open(run_dir).model(), Run.open(tmp_path / "small").model()
    kept = result.physical["kept_channels"]
    assert not result.physical["reconstructed"] and kept == sorted(result.orders["semantic"][-4:])
    mask = torch.zeros(8)
    mask[kept] = 1
    model.set_channel_keep(mask)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(small(x).logits, model(x).logits, rtol=1e-5, atol=1e-5)
