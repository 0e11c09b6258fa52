"""The role operation: every channel of one face part scaled (switched off at alpha = 0), GAN Dissection's
operation. It is the scale operation (and at alpha = 0 pruning) on the part's channels; the registry-driven
tests (test_operations.py, the hitl tests) cover the rest."""
import numpy as np
import pytest
import torch

from hpnet.analysis.dissect import DissectSettings, channel_roles
from hpnet.data import DataSpec, load_split
from hpnet.data.synthetic import PARTS
from hpnet.errors import HPNetError
from hpnet.operations import OPERATIONS, measure_operations, read_view
from hpnet.predictability import PredictabilitySettings

from test_heads import NAMES, tiny

role, prune, scale = (OPERATIONS.get(n) for n in ("role", "prune", "scale"))


@pytest.fixture(scope="module")
def net():
    spec = DataSpec(dataset="synthetic", image_size=16, max_images=64, attributes=NAMES)
    data = load_split(spec, "test", False).subset(torch.arange(32))
    model = tiny("attention")
    view = read_view(model, data, "tiny (attention)", max_images=None)
    named = view.replace(roles=channel_roles(model, data, DissectSettings(threshold=0.0)))   # every channel a part
    return model, data, named


def test_switching_a_part_off_is_switching_its_listed_channels_off(net):
    model, data, view = net
    x = data.images.float() / 255
    with torch.no_grad():
        z, context = model.encode(x)
        for part in {r for r in view.roles if r != "none"}:
            params = role.parse({"part": part, "alpha": 0.0}, view)
            listed = [c for c, r in enumerate(view.roles) if r == part]
            assert list(params.channels) == listed and listed
            off = prune.parse({"channels": listed}, view)
            torch.testing.assert_close(role.heads(model, params)(z, context), prune.heads(model, off)(z, context),
                                       rtol=0, atol=0)
            assert torch.equal(role.apply(model.operation_state(), params).keep,
                               prune.apply(model.operation_state(), off).keep)
            assert torch.equal(role.predict(view, params).change, prune.predict(view, off).change)
            assert torch.equal(role.predict(view, params).size, prune.predict(view, off).size)
            half = role.parse({"part": part, "alpha": 0.5}, view)
            same = scale.parse({"channels": listed, "alpha": 0.5}, view)
            assert torch.equal(role.predict(view, half).change, scale.predict(view, same).change)
            torch.testing.assert_close(role.persist(model, half)(x).logits, scale.persist(model, same)(x).logits,
                                       rtol=0, atol=0)


def test_the_card_names_the_part_and_its_channels(net):
    _, _, view = net
    part = next(r for r in view.roles if r != "none")
    params = role.parse({"part": part, "alpha": 0.0}, view)
    card = role.card(view, params).to_json(view.attributes)
    assert card["common"] == {"part": part, "channels": list(params.channels), "alpha": 0.0}
    assert card["description"].startswith(f"switch off the {part} channels (")
    assert role.describe(role.parse({"part": part, "alpha": 1.5}, view)).startswith(f"scale by 1.5 the {part}")


def test_a_part_without_channels_changes_nothing(net):
    model, data, view = net
    empty = next(p for p in view.parts if p not in view.roles)
    params = role.parse({"part": empty, "alpha": 0.0}, view)
    assert params.channels == ()
    assert torch.equal(role.predict(view, params).change, torch.zeros(len(NAMES), dtype=torch.float64))
    measured = measure_operations(model, data, [role.heads(model, params)], max_images=None)
    assert torch.equal(measured["abs_change"], torch.zeros_like(measured["abs_change"]))


def test_scored_and_drawn_parts_are_those_with_channels(net):
    _, _, view = net
    having = [p for p in view.parts if p in view.roles]
    scored = role.scored(view, PredictabilitySettings())
    assert sorted({p.part for p in scored}) == sorted(having) and len(scored) == 4 * len(having)
    drawn = {role.draw(np.random.default_rng(s), view).part for s in range(40)}
    assert drawn <= set(having) and len(drawn) > 1


def test_without_roles_it_does_not_apply_and_says_why_in_one_line(net):
    model, data, view = net
    plain = view.replace(roles=None)
    assert not role.applies_to(plain) and role.applies_to(model)
    none = view.replace(roles=("none",) * len(view.roles))
    assert not role.applies_to(none)
    for v, why in ((plain, "do not say where face parts lie"), (none, "no channel has a face part")):
        with pytest.raises(HPNetError, match=why) as error:
            role.parse({"part": "mouth", "alpha": 0.0}, v)
        assert "\n" not in str(error.value) and "role" in str(error.value)


def test_channels_given_must_be_the_parts_channels(net):
    _, _, view = net
    part = next(r for r in view.roles if r != "none")
    params = role.parse({"part": part, "alpha": 0.0}, view)
    spec = {k: v for k, v in role.to_json(params).items() if k != "operation"}
    assert role.parse(spec, view) == params
    with pytest.raises(HPNetError, match=f"the {part} channels of the tiny"):
        role.parse({**spec, "channels": [c for c in range(len(view.roles)) if c not in params.channels][:1]}, view)
    assert set(role.fields[0].choices) == set(PARTS)
