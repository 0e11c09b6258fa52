"""The scale operation: channels multiplied by alpha for every attribute (alpha = 0 is pruning).

Everything else about it (the score, compare's columns, the report, the page, JSON round trips,
apply == persistent form) is tested by the registry-driven tests; these are its own facts.
"""
import numpy as np
import pytest
import torch

from hpnet.errors import HPNetError
from hpnet.model import HPNet, ModelConfig
from hpnet.data import DataSpec, load_split
from hpnet.operations import OPERATIONS, measure_operations, read_view

NAMES = ["Smiling", "Eyeglasses", "Wearing_Hat"]


@pytest.fixture(scope="module")
def setting():
    torch.manual_seed(0)
    model = HPNet(ModelConfig(NAMES, backbone="strided", widths=(4, 6, 8), head="channel")).eval()
    data = load_split(DataSpec(dataset="synthetic", image_size=16, max_images=64, attributes=NAMES), "train", False)
    return model, data, read_view(model, data, "tiny (channel)", 32)


def test_scale_is_registered_with_its_controls():
    scale = OPERATIONS.get("scale")
    assert [f.name for f in scale.fields] == ["channels", "alpha"]
    assert (scale.fields[1].low, scale.fields[1].high) == (0.0, 2.0)


def test_alpha_zero_measures_exactly_what_pruning_measures(setting):
    model, data, view = setting
    scale, prune = OPERATIONS.get("scale"), OPERATIONS.get("prune")
    a = scale.parse({"channels": [1, 5], "alpha": 0.0}, view)
    b = prune.parse({"channels": [1, 5]}, view)
    got = measure_operations(model, data, [scale.heads(model, a), prune.heads(model, b)], 32)
    torch.testing.assert_close(got["mean_change"][0], got["mean_change"][1], rtol=0, atol=0)
    torch.testing.assert_close(scale.predict(view, a).change, prune.predict(view, b).change, rtol=0, atol=1e-15)


def test_alpha_one_changes_nothing_and_the_formula_is_linear_in_alpha(setting):
    model, data, view = setting
    scale = OPERATIONS.get("scale")
    one = scale.parse({"channels": [2], "alpha": 1.0}, view)
    assert measure_operations(model, data, [scale.heads(model, one)], 32)["abs_change"].abs().max() == 0
    changes = [scale.predict(view, scale.parse({"channels": [2, 3], "alpha": a}, view)).change for a in (0.0, 0.5, 1.5, 2.0)]
    for alpha, change in zip((0.0, 0.5, 1.5, 2.0), changes):     # alpha = 0 is pruning: (1 - alpha) x its change
        torch.testing.assert_close(change, (1.0 - alpha) * changes[0], rtol=1e-12, atol=1e-15)


def test_the_persistent_form_scales_the_keep_mask(setting):
    model, _, view = setting
    scale = OPERATIONS.get("scale")
    changed = scale.persist(model, scale.parse({"channels": [0, 7], "alpha": 1.5}, view))
    expected = torch.ones(8)
    expected[[0, 7]] = 1.5
    assert torch.equal(changed.channel_keep, expected) and torch.equal(model.channel_keep, torch.ones(8))
    x = torch.rand(2, 3, 16, 16)
    z = model.features(x)
    torch.testing.assert_close(changed.features(x), z * expected.view(1, -1, 1, 1))


def test_a_linear_head_moves_by_exactly_alpha_minus_one_times_the_channels_term():
    torch.manual_seed(1)
    model = HPNet(ModelConfig(NAMES, backbone="strided", widths=(4, 8), head="linear")).eval()
    scale = OPERATIONS.get("scale")
    data = load_split(DataSpec(dataset="synthetic", image_size=16, max_images=16, attributes=NAMES), "train", False)
    fn = scale.heads(model, scale.parse({"channels": [3], "alpha": 0.25}, read_view(model, data, "plain (linear)", 8)))
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        z, context = model.encode(x)
        got = fn(z, context) - model.heads(z, context)[0]
    expected = -0.75 * model.heads.weight[:, 3].view(1, -1) * z[:, 3].mean((1, 2)).view(-1, 1)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("spec, message", [
    ({"channels": [1], "alpha": 2.5}, r"alpha must be a number in \[0, 2\], got 2.5"),
    ({"channels": [1], "alpha": True}, r"alpha must be a number"),
    ({"channels": [], "alpha": 0.5}, r"channels must be a non-empty list"),
    ({"channels": [1, 1], "alpha": 0.5}, r"listed twice"),
    ({"channels": [9], "alpha": 0.5}, r"channel must be an id in 0..7, got 9"),
    ({"channels": [1], "alpha": 0.5, "beta": 1}, r"unknown key 'beta' in a scale operation"),
])
def test_bad_parameters_are_one_line_errors(setting, spec, message):
    with pytest.raises(HPNetError, match=message):
        OPERATIONS.get("scale").parse(spec, setting[2])


def test_draws_use_the_scored_factors_and_describe_themselves(setting):
    scale, view = OPERATIONS.get("scale"), setting[2]
    draws = [scale.draw(np.random.default_rng(s), view) for s in range(40)]
    assert {d.alpha for d in draws} <= {0.0, 0.5, 1.5, 2.0} and len({d.alpha for d in draws}) > 1
    assert scale.describe(scale.parse({"channels": [3], "alpha": 0.5}, view)) == "scale channel 3 by 0.5"
    assert scale.describe(scale.parse({"channels": [3, 4], "alpha": 2}, view)) == "scale channels 3, 4 by 2"
