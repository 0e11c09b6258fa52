"""Human predictability: the score itself, the human-side predictions, localisation, calibration, a run."""
import json
import math
from collections import namedtuple

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dissecthelp import every_channel_named
from hpnet.commands import predictability_run, train_run
from hpnet.core.stats import (
    ResampleRanks, average_ranks, cluster_bootstrap_spearman, mean_ci, predictability_score, resample_counts,
    resampled_spearman, spearman)
from hpnet.data import DataSpec, load_split
from hpnet.errors import HPNetError
from hpnet.model import HPNet, ModelConfig
from hpnet.operations import OPERATIONS, View, channel_sets, channel_usage, read_view
from hpnet.predictability import (
    EXPLAINERS, PredictabilitySettings, captum_available, energy_fraction, gradcam_maps, localisation,
    permutation_maps, pooled_maps, regression_predictability, saliency_maps, score_operations)
from hpnet.report.predictability import report_section
from hpnet.results import PredictabilityResult
from hpnet.run import Run
from hpnet.train import TrainConfig

NAMES = ["Smiling", "Eyeglasses", "Wearing_Hat"]
TINY = {"backbone": "strided", "widths": (4, 6, 8)}


# ---------------------------------------------------------------------------- the score


def test_perfect_predictor_scores_one_with_a_tight_interval():
    x = np.random.default_rng(0).normal(size=(20, 10))
    s = predictability_score(x, 3 * x + 1, n_boot=300)
    assert s["score"] == pytest.approx(1.0)
    assert s["ci_low"] == pytest.approx(1.0) and s["ci_high"] == pytest.approx(1.0)
    assert s["n"] == 200


def test_monotone_but_nonlinear_predictor_still_scores_one():
    x = np.random.default_rng(1).uniform(0.01, 1, 100)
    assert predictability_score(x, np.exp(5 * x), n_boot=50)["score"] == pytest.approx(1.0)


def test_reversed_predictor_scores_minus_one():
    x = np.arange(50.0)
    assert predictability_score(x, -x, n_boot=50)["score"] == pytest.approx(-1.0)


def test_shuffled_predictor_scores_near_zero_and_its_interval_covers_zero():
    rng = np.random.default_rng(2)
    measured = rng.normal(size=400)
    s = predictability_score(rng.permutation(measured), measured, n_boot=500)
    assert abs(s["score"]) < 0.15
    assert s["ci_low"] < 0 < s["ci_high"]


def test_ties_get_average_ranks_and_match_scipy():
    np.testing.assert_allclose(average_ranks([3, 1, 2, 2, 2, 5]), [5, 1, 3, 3, 3, 6])
    np.testing.assert_allclose(average_ranks([[1, 1], [2, 1]]), [[1.5, 1.5], [2, 1]])
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 4, 60).astype(float), rng.integers(0, 5, 60).astype(float)  # many ties
    assert float(spearman(a, b)) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)


def test_nan_pairs_are_left_out_and_degenerate_inputs_give_nan():
    p = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    m = np.array([1.0, 2.0, 3.0, np.nan, 6.0])
    assert predictability_score(p, m, n_boot=20)["n"] == 3
    assert math.isnan(predictability_score(np.ones(10), np.arange(10.0), n_boot=20)["score"])
    assert math.isnan(predictability_score([1.0, 2.0], [1.0, 2.0])["score"])
    with pytest.raises(HPNetError, match="same size"):
        predictability_score(np.ones(3), np.ones(4))


def test_bootstrap_is_seeded_and_mean_ci_brackets_the_mean():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=80), rng.normal(size=80)
    assert predictability_score(x, x + y, seed=7) == predictability_score(x, x + y, seed=7)
    m = mean_ci(rng.normal(1.0, 1.0, 200), n_boot=400)
    assert m["ci_low"] < m["score"] < m["ci_high"] and m["ci_low"] < 1.0 < m["ci_high"]


def written_out(p, m, owner, counts):
    """Spearman's rho of each resample written out (each cluster's pairs repeated by its count); a
    resample whose prediction is constant scores 0."""
    out = []
    for row in counts:
        idx = np.repeat(np.arange(len(p)), row[owner])
        out.append(0.0 if np.ptp(p[idx]) == 0 else float(spearman(p[idx], m[idx])))
    return np.array(out)


VALUE = st.one_of(st.integers(-3, 3), st.sampled_from([0.0, 0.0, 0.5, -1.25]), st.floats(-2, 2, width=16))
TRIAL = st.integers(1, 4).flatmap(lambda k: st.tuples(st.lists(VALUE, min_size=k, max_size=k),
                                                       st.lists(VALUE, min_size=k, max_size=k)))


@settings(max_examples=150, derandomize=True, database=None, deadline=None)
@given(trials=st.lists(TRIAL, min_size=1, max_size=8), data=st.data())
def test_resampled_spearman_is_the_spearman_of_the_resample_written_out(trials, data):
    """Heavy ties (a person's sizes -3..3, zeros) and repeated clusters: equal to 1e-12, constant sides included."""
    p = np.array([v for pred, _ in trials for v in pred], dtype=float)
    m = np.array([v for _, meas in trials for v in meas], dtype=float)
    owner = np.repeat(np.arange(len(trials)), [len(pred) for pred, _ in trials])
    row = st.lists(st.integers(0, 3), min_size=len(trials), max_size=len(trials)).filter(any)
    counts = np.array(data.draw(st.lists(row, min_size=1, max_size=4)))
    fast = resampled_spearman({"p": ResampleRanks(p, owner)}, ResampleRanks(m, owner), counts)["p"]
    np.testing.assert_allclose(fast, written_out(p, m, owner, counts), rtol=0, atol=1e-12)


def test_the_cluster_bootstrap_draws_clusters_with_replacement_in_blocks():
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 5, 40)
    owner = np.repeat(np.arange(40), sizes)
    m = rng.normal(size=owner.size)
    p = {"person": rng.integers(-3, 4, owner.size).astype(float), "formula": m + rng.normal(size=owner.size)}
    draws = np.random.default_rng(9)                          # n draws with replacement per resample
    counts = np.array([np.bincount(draws.integers(0, 40, 40), minlength=40) for _ in range(30)])
    assert np.array_equal(resample_counts(np.random.default_rng(9), 40, 30), counts)
    for block in (1, 4 * owner.size, 1 << 17):                 # one resample per block, four, all
        boots = cluster_bootstrap_spearman(p, m, owner, n_boot=30, seed=9, block_elements=block)
        for name, values in p.items():
            np.testing.assert_allclose(boots[name], written_out(values, m, owner, counts), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------- human-side predictions


def view_of(weights, seen) -> View:
    """A view with these weights and mean masks (K, C), identity tone curve."""
    w, m = torch.as_tensor(weights, dtype=torch.float64), torch.as_tensor(seen, dtype=torch.float64)
    K, C = w.shape
    return View("net (attention)", tuple(f"a{k}" for k in range(K)), w, m, torch.ones(C, dtype=torch.float64),
                w.abs() * m, True, torch.ones(K, dtype=torch.float64), torch.zeros(K, dtype=torch.float64))


def test_pruning_prediction_is_the_share_of_evidence_pruned():
    view = view_of([[1.0, -3.0, 0.0, 0.0], [0.0, 1.0, 1.0, 2.0]], torch.ones(2, 4))
    prune = OPERATIONS.get("prune")
    sizes = [prune.predict(view, prune.parse({"channels": c}, view)).size.tolist() for c in ([0, 1, 2, 3], [1], [2, 3])]
    np.testing.assert_allclose(sizes, [[1, 1], [0.75, 0.25], [0, 0.75]])
    # the signed change: the logit loses what the channels carried (channel 1 spoke against attribute 0)
    change = prune.predict(view, prune.parse({"channels": [1]}, view)).change
    np.testing.assert_allclose(change.tolist(), [0.75, -0.25])


def test_channel_sets_are_random_groups_and_every_single_channel():
    sets = channel_sets(16, groups=5, seed=0)
    assert [len(s) for s in sets] == [2] * 5 + [1] * 16
    assert [s[0] for s in sets[5:]] == list(range(16))
    assert len(channel_sets(128, groups=0, singles=64)) == 64
    assert sets == channel_sets(16, groups=5, seed=0)


def test_transform_prediction_is_zero_for_the_identity_and_signed_by_the_weights():
    view = view_of([[1.0, -1.0], [2.0, 0.5]], [[0.2, 0.8], [0.3, 0.3]])
    tone = OPERATIONS.get("tone")
    p = torch.stack([tone.predict(view, tone.parse({"n": n, "beta": b}, view)).change
                     for n, b in [(1.0, 0.0), (2.0, 0.0), (1.0, 0.5)]])
    assert torch.all(p[0] == 0)
    # n = 2 pushes 0.2 down and 0.8 up: both lower attribute 0's logit (w = +1, -1)
    assert p[1, 0] < 0
    assert torch.all(p[2] < 0)  # beta > 0 lowers every mask; attribute 1 has positive weights only


# ---------------------------------------------------------------------------- localisation maps


def test_energy_fraction_of_inside_uniform_empty_and_zero_maps():
    regions = torch.zeros(1, 4, 8, 8, dtype=torch.bool)
    regions[0, :3, 2:4, 2:6] = True                       # area share 8 / 64; attribute 3: empty region
    maps = torch.zeros(1, 4, 8, 8)
    maps[0, 0] = regions[0, 0].float() * torch.rand(8, 8)  # entirely inside
    maps[0, 1] = 1.0                                       # uniform
    frac, hit = energy_fraction(maps, regions)             # attribute 2: all-zero map
    assert frac[0, 0] == pytest.approx(1.0) and hit[0, 0] == 1.0
    assert frac[0, 1] == pytest.approx(8 / 64)
    assert frac[0, 2] == pytest.approx(8 / 64) and hit[0, 2] == pytest.approx(8 / 64)
    assert math.isnan(frac[0, 3]) and math.isnan(hit[0, 3])


Out = namedtuple("Out", "logits")


class PatchModel(torch.nn.Module):
    """Logit k = sum of the pixels of one known 4 x 4 patch of colour channel 0."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return Out(torch.stack([x[:, 0, :4, :4].sum((1, 2)), x[:, 0, 4:8, 8:12].sum((1, 2))], 1) * self.w)


def test_patch_permutation_finds_exactly_the_patch_a_model_reads():
    x = torch.rand(6, 3, 16, 16)
    maps = permutation_maps(PatchModel(), x, patch=4, seed=0)
    assert maps.shape == (6, 2, 16, 16)
    inside = torch.zeros(2, 16, 16, dtype=torch.bool)
    inside[0, :4, :4] = inside[1, 4:8, 8:12] = True
    assert torch.all(maps[:, inside] > 0) and torch.all(maps[:, ~inside] == 0)


def tiny(head: str = "attention", seed: int = 0) -> HPNet:
    torch.manual_seed(seed)
    return HPNet(ModelConfig(NAMES, head=head, **TINY)).eval()


def test_gradcam_of_a_linear_head_is_cam():
    model = tiny("linear")
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        z = model.features(x)
        cam = torch.relu(torch.einsum("kc,bchw->bkhw", model.heads.weight, z))
    expected = torch.nn.functional.interpolate(cam, size=(16, 16), mode="bilinear", align_corners=False)
    got = gradcam_maps(model, x) * z.shape[2] * z.shape[3]  # alpha_c = w_kc / HW
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(not captum_available(), reason="Captum is not installed")
@pytest.mark.parametrize("head", ["attention", "linear"])
def test_builtin_gradcam_and_saliency_agree_with_captum(head):
    model, x = tiny(head), torch.rand(4, 3, 16, 16)
    torch.testing.assert_close(gradcam_maps(model, x), gradcam_maps(model, x, "captum"), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(saliency_maps(model, x), saliency_maps(model, x, "captum"), atol=1e-6, rtol=1e-4)


# ---------------------------------------------------------------------------- what the classifier pools


def square_features(head: str) -> HPNet:
    """A network whose features copy the colours (z_0..2 = red, green, blue at every pixel, z_3 = 0)
    through two 3x3 convs that only pass their centre: z has the image's size and z_c >= 0."""
    torch.manual_seed(0)
    model = HPNet(ModelConfig(["A", "B"], backbone="paper", widths=(4, 4), dilations=(1, 1), head=head)).eval()
    with torch.no_grad():
        for block in model.extractor:
            conv, norm = block[0], block[1]
            conv.weight.zero_()
            for c in range(3):
                conv.weight[c, c, 1, 1] = 1.0
            norm.running_mean.zero_(), norm.running_var.fill_(1 - norm.eps), norm.weight.fill_(1), norm.bias.zero_()
        model.heads.weight.copy_(torch.tensor([[2.0, 0.5, -1.0, 3.0], [-3.0, 1.0, 0.25, -2.0]]))
    return model


class SquareRegions:
    """16 x 16 images lit (red only) on the square rows 0:8, columns 0:8; attribute A's evidence
    region holds the square, B's (rows 0:8, columns 4:12) half of it."""

    def __init__(self, n: int = 5):
        self.images = torch.zeros(n, 3, 16, 16, dtype=torch.uint8)
        self.images[:, 0, :8, :8] = 255
        self.regions = torch.zeros(n, 2, 16, 16, dtype=torch.bool)
        self.regions[:, 0, :10, :10] = True
        self.regions[:, 1, :8, 4:12] = True

    def __len__(self) -> int:
        return len(self.images)

    def region_masks(self, idx) -> torch.Tensor:
        return self.regions[idx]


@pytest.mark.parametrize("head", ["attention", "channel", "context", "linear"])
def test_pooled_localisation_is_where_the_features_fire(head):
    """z fires only on the square, so what the classifier pools lies there whatever the masks: A's
    region holds all of it; with masks constant on the square, B's holds half (known values); chance is
    the regions' area shares."""
    model = square_features(head)
    if head == "channel":           # its 3x3 filters see the square's edges: masks constant on the square too
        with torch.no_grad():
            model.heads.mask_weight.zero_()
    loc = localisation(model, SquareRegions(), max_images=5, methods=("pooled",), n_boot=20, batch_size=2)
    assert loc["pooled"]["per_attribute"] == pytest.approx([1.0, 0.5])
    assert loc["pooled"]["score"] == pytest.approx(0.75)
    assert loc["chance"]["score"] == pytest.approx((100 / 256 + 64 / 256) / 2)


@pytest.mark.parametrize("head", ["attention", "channel", "context", "linear"])
def test_pooled_maps_average_to_what_the_classifier_pools(head):
    """With z >= 0 and g(M) >= 0 the map's mean over positions is sum_c |w_kc pooled_kc|, the terms of
    the logit (under the network's own tone curve: set one on the heads with masks)."""
    model = square_features(head)
    if model.has_masks:
        model.set_transform(torch.tensor([2.0, 0.5]), torch.tensor([0.0, 0.0]))
    x = torch.rand(3, 3, 16, 16)
    maps = pooled_maps(model, x, chunk_mb=0)                            # one image per slice
    with torch.no_grad():
        z, context = model.encode(x)
        terms = (model.heads.pooled(z, context) * model.heads.weight).abs().sum(-1)     # (n, K)
    torch.testing.assert_close(maps.mean(dim=(2, 3)), terms, atol=1e-5, rtol=1e-4)
    assert maps.shape == (3, 2, 16, 16) and torch.all(maps >= 0)


# ---------------------------------------------------------------------------- calibration


def test_regression_calibration_orthogonal_bases_beat_the_naive_polynomial():
    r = regression_predictability(n_boot=200)
    assert r["legendre"]["score"] > r["power"]["score"]
    assert r["fourier"]["score"] > r["power"]["score"]
    assert r["legendre"]["score"] == pytest.approx(1.0) and r["fourier"]["score"] == pytest.approx(1.0)
    assert r["power"]["ci_high"] < 1.0


# ---------------------------------------------------------------------------- a trained run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pred") / "run"
    spec = DataSpec(dataset="synthetic", image_size=16, max_images=256, attributes=NAMES)
    train_run(out, spec, dict(TINY), TrainConfig(epochs=1, batch_size=32), progress=False)
    return out


def test_every_operation_is_scored_on_a_trained_model(run):
    model = Run.open(run).model()
    spec = DataSpec(dataset="synthetic", image_size=16, max_images=256, attributes=NAMES)
    train, test = load_split(spec, "train", False), load_split(spec, "test", False)
    with every_channel_named():             # so that the role operation applies (see dissecthelp)
        view = read_view(model, train, "run (attention)", 64)
    settings = PredictabilitySettings(max_images=64, groups=4, n_boot=100, transforms=[(2.0, 0.0), (1.0, 0.5)])
    before = model.operation_state()
    scores = score_operations(model, test, view, settings)
    assert set(scores) == set(OPERATIONS.names())
    r = scores["prune"]
    assert r["n"] == 12 * 3 and r["predictor"] == "mask_x_weight" and r["measure"] == "logit"
    assert all(math.isfinite(r[k]) for k in ("score", "ci_low", "ci_high"))
    assert np.asarray(r["data"]["logit"]).shape == (12, 3)
    assert set(r["variants"]) == {"mask_x_weight", "mask_x_weight_x_activation", "weight", "contribution"}
    t = scores["tone"]
    assert t["n"] == 6 and math.isfinite(t["score"]) and t["measure"] == "signed logit"
    after = model.operation_state()     # the model is left as it was
    assert torch.equal(after.keep, before.keep) and torch.equal(after.n, before.n) and not model.heads.transform_active


def test_localisation_of_a_trained_model(run):
    model = Run.open(run).model()
    data = load_split(DataSpec(dataset="synthetic", image_size=16, max_images=256, attributes=NAMES), "test", False)
    loc = localisation(model, data, max_images=6, n_boot=50, batch_size=3, patch=4)
    for m in ("attention", "pooled") + EXPLAINERS + ("chance",):
        assert 0.0 <= loc[m]["score"] <= 1.0 and len(loc[m]["per_attribute"]) == 3
    assert loc["images"] == 6


def test_predictability_run_writes_the_interface(run):
    with every_channel_named():             # so that the role operation applies (see dissecthelp)
        result = predictability_run(run, PredictabilitySettings(max_images=64, localisation_images=4,
                                                                usage_images=64, groups=4, n_boot=100, batch_size=32),
                                    progress=False)
    saved = json.loads((run / PredictabilityResult.FILE).read_text())
    assert saved == result.to_json()
    own, plain = "run (attention)", "run/plain (linear)"        # named as trials.jsonl and compare.json name them
    assert list(saved["networks"]) == [own, plain]
    assert saved["networks"][own]["role"] == "run" and saved["networks"][plain]["head"] == "linear"
    for op in OPERATIONS.names():
        nets = [own] + ([plain] if not OPERATIONS.get(op).needs_masks else [])
        assert list(saved["operations"][op]) == nets
        for net in nets:
            assert {"score", "ci_low", "ci_high", "operations", "data"} <= set(saved["operations"][op][net])
    for net in (own, plain):
        assert saved["accuracy"][net]["mean_accuracy"] > 0
    assert {"attention", "pooled", "gradcam", "saliency", "chance"} <= set(saved["localisation"][own])
    assert {"pooled", "gradcam", "chance"} <= set(saved["localisation"][plain]) and "attention" not in saved["localisation"][plain]
    assert set(saved["regression"]) == {"power", "legendre", "fourier"}
    assert all(isinstance(v, float) for v in saved["regression"].values())
    assert (run / "plain" / "model.safetensors").is_file()
    for op in OPERATIONS.names():
        assert (run / "figures" / f"predictability_{op}.png").is_file()
    html = report_section(Run.open(run))
    assert plain in html and "data:image/png;base64," in html
    assert all(OPERATIONS.get(op).title in html for op in OPERATIONS.names())


def test_an_old_predictability_file_is_named_in_the_report(run, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "run.json").write_text((run / "run.json").read_text())
    (old / PredictabilityResult.FILE).write_text(json.dumps({"pruning": {}, "accuracy": {}}))
    html = report_section(Run.open(old))
    assert "missing operations" in html and "hpnet predictability" in html


def test_predictability_run_refuses_a_plain_run_or_an_attention_baseline(run, tmp_path):
    with pytest.raises(HPNetError, match="must be a plain CNN"):
        predictability_run(run, PredictabilitySettings(plain_run=run), progress=False)
    linear = tmp_path / "linear"
    tiny("linear").save(linear)
    (linear / "run.json").write_text((run / "run.json").read_text())
    with pytest.raises(HPNetError, match="linear heads"):
        predictability_run(linear, progress=False)


def test_the_contribution_predictor_is_defined_for_every_network_alike(run):
    model, plain = Run.open(run).model(), tiny("linear")
    data = load_split(DataSpec(dataset="synthetic", image_size=16, max_images=256, attributes=NAMES), "test", False)
    for net in (model, plain):
        usage = channel_usage(net, data, 32)
        with torch.no_grad():
            z, context = net.encode(data.images[:32].float() / 255)
            by_hand = (net.heads.pooled(z, context) * net.heads.weight).abs().mean(0).double()
        torch.testing.assert_close(usage["contributions"], by_hand, rtol=1e-5, atol=1e-7)
    # for the plain CNN it is the weight x activation predictor
    view = read_view(plain, data, "plain (linear)", 32)
    views = OPERATIONS.get("prune").predictors(view)
    torch.testing.assert_close(views["contribution"].evidence(), views["weight_x_activation"].evidence().abs(),
                               rtol=1e-5, atol=1e-8)
