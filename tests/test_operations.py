"""Every registered operation on every registered head family: the formula's shape and signs, what it
predicts exactly where the heads allow it, the heads-only form against the persistent one, the model's
state, the JSON form, one-line errors, the card and the score.

The tests are built from the registries (``HEADS`` x ``OPERATIONS``, and each family's ``fields``), so
a new head family or operation is tested here with no edit to this file.
"""
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hpnet.analysis.dissect import DissectSettings, channel_roles
from hpnet.data import DataSpec, load_split
from hpnet.errors import HPNetError
from hpnet.model import HEADS
from hpnet.operations import OPERATIONS, measure_operations, per_std, read_view, rounded
from hpnet.predictability import PredictabilitySettings, score_operations

from test_heads import NAMES, terms, tiny

IMAGES = 32
PAIRS = [(head, name) for head in HEADS.names() for name in OPERATIONS.names()]
SEEDS = range(6)
OWN_TONE = (torch.tensor([2.0, 1.0, 0.5]), torch.tensor([0.2, 0.0, 0.1]))   # a network's own curve, not g = id
SCORE = dict(max_images=16, usage_images=16, groups=2, singles=4, n_boot=20, transforms=[(2.0, 0.0), (1.0, 0.5)])


class Net:
    """A tiny model of one head family, its view read on the very images the operations are measured
    on (so that what the view holds and what is measured are means over the same images)."""

    def __init__(self, head: str, data):
        self.head, self.data = head, data
        self.model = tiny(head)
        if self.model.has_masks:
            self.model.set_transform(*OWN_TONE)
        view = read_view(self.model, data, head, max_images=None)
        assert view.roles is not None and view.parts == data.parts      # synthetic faces know their parts
        # these tiny untrained networks seldom pass the dissection's threshold: every channel gets its best
        # part here, so that operations on the channels' roles have channels to act on
        self.view = view.replace(roles=channel_roles(self.model, data, DissectSettings(threshold=0.0)))
        self.x = data.images.float() / 255
        self.exact = self._exact(0.0)                  # pruning removes exactly a channel's term
        self.linear_in_scale = self._exact(0.5)        # scaling a channel scales exactly its term

    def _exact(self, alpha: float) -> bool:
        """Whether scaling any one channel by ``alpha`` scales exactly its term of every logit by alpha,
        to float error (measured on the model, not assumed from the head's name)."""
        model, x = self.model, self.x
        with torch.no_grad():
            before, parts = model(x).logits, terms(model, x)
            worst = 0.0
            for c in range(self.view.channels):
                keep = torch.ones(self.view.channels)
                keep[c] = alpha
                with model.perturbed(keep=keep):
                    expected = before + (alpha - 1) * parts[:, :, c]
                    worst = max(worst, float((model(x).logits - expected).abs().max()))
        return worst <= 1e-4 * float(parts.abs().max())


@pytest.fixture(scope="module")
def data():
    spec = DataSpec(dataset="synthetic", image_size=16, max_images=64, attributes=NAMES)
    return load_split(spec, "test", False).subset(torch.arange(IMAGES))


@pytest.fixture(scope="module")
def nets(data):
    """``nets(head)``: one tiny network per head family, built once for the module."""
    built = {}

    def get(head: str) -> Net:
        if head not in built:
            built[head] = Net(head, data)
        return built[head]
    return get


def applicable(nets, head: str, name: str):
    net, op = nets(head), OPERATIONS.get(name)
    if not op.applies_to(net.model):
        pytest.skip(f"{name} does not apply to the {head} heads "
                    f"(see test_an_operation_that_does_not_apply_is_refused_in_one_line)")
    return net, op


def examples(op, view) -> list:
    """Drawn operations over several seeds, then every operation the score measures."""
    return [op.draw(np.random.default_rng(s), view) for s in SEEDS] + op.scored(view, PredictabilitySettings())


def assert_one_line(error: pytest.ExceptionInfo, *named: str) -> str:
    message = str(error.value)
    assert message and "\n" not in message, message
    for text in named:
        assert text in message, (text, message)
    return message


def same_state(a, b) -> bool:
    return all((x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
               for x, y in zip(a, b))


def neutral_spec(op, view) -> dict | None:
    """The operation that changes nothing, from the family's controls: every channel, each number at
    the network's own value (a View attribute of that name, e.g. its tone curve) or at its default.
    None when no control can make it neutral (a family whose only control is a channel set)."""
    numbers = [f for f in op.fields if f.kind == "number"]
    if not numbers:
        return None
    spec = {}
    for f in op.fields:
        if f.kind == "channels":
            spec[f.name] = list(range(view.channels))
        elif f.kind == "number":
            own = getattr(view, f.name, None)
            spec[f.name] = own.tolist() if isinstance(own, torch.Tensor) else f.default
        elif f.kind == "choice":
            spec[f.name] = f.default
    return spec


def base_spec(op, view) -> dict:
    """A valid spec from the controls: channel 0, each number at its default, attributes at theirs."""
    spec = {f.name: [0] if f.kind == "channels" else f.default for f in op.fields}
    op.parse(dict(spec), view)
    return spec


def bad_values(field, view) -> list:
    if field.kind == "channels":
        C = view.channels
        return [[C], [-1], [0, 0], [1, 2, 1], [], "0", [True], [0.5]]
    if field.kind == "number":
        return [field.low - 0.5, field.high + 0.5, math.nan, "1", None, True]
    if field.kind == "attributes":
        return [["Nope"], [NAMES[0], "Nope"], [], "some", 3]
    if field.kind == "choice":
        return ["nope", "", None, 3, list(field.choices[:1]), field.default.upper()]
    raise AssertionError(f"a control of kind {field.kind!r}: add its bad values here")


# ---------------------------------------------------------------------------- applies or refuses


@pytest.mark.parametrize("head,name", PAIRS)
def test_an_operation_that_does_not_apply_is_refused_in_one_line(nets, head, name):
    net, op = nets(head), OPERATIONS.get(name)
    assert op.applies_to(net.model) == op.applies_to(net.view) == (net.model.has_masks or not op.needs_masks)
    assert HEADS.get(head).masks == net.model.has_masks
    if op.applies_to(net.model):
        for p in examples(op, net.view)[:2]:
            op.card(net.view, p)
        return
    params = op.draw(np.random.default_rng(0), net.view)
    spec = {k: v for k, v in op.to_json(params).items() if k != "operation"}
    for call in (lambda: op.parse(spec, net.view),
                 lambda: op.card(net.view, params),
                 lambda: op.heads(net.model, params),
                 lambda: op.persist(net.model, params)):
        with pytest.raises(HPNetError) as error:
            call()
        assert_one_line(error, name)


# ---------------------------------------------------------------------------- the formula


@pytest.mark.parametrize("head,name", PAIRS)
def test_the_formula_is_finite_float64_per_attribute_and_its_size_bounds_its_change(nets, head, name):
    net, op = applicable(nets, head, name)
    K = len(NAMES)
    for p in examples(op, net.view):
        for predictor, view in op.predictors(net.view).items():
            change, size = op.predict(view, p)
            for t in (change, size):
                assert t.shape == (K,) and t.dtype == torch.float64 and torch.isfinite(t).all(), (predictor, p)
            assert (size >= 0).all(), (predictor, p, size)
            assert (change.abs() <= size * (1 + 1e-12) + 1e-15).all(), (predictor, p, change, size)


@pytest.mark.parametrize("head,name", PAIRS)
def test_an_operation_that_changes_nothing_predicts_and_measures_no_change(nets, head, name):
    net, op = applicable(nets, head, name)
    spec = neutral_spec(op, net.view)
    if spec is None:                                    # a channel set alone: the empty set is refused
        field = next(f for f in op.fields if f.kind == "channels")
        with pytest.raises(HPNetError) as error:
            op.parse({field.name: []}, net.view)
        assert_one_line(error, field.name)
        return
    params = op.parse(spec, net.view)
    for predictor, view in op.predictors(net.view).items():
        change, size = op.predict(view, params)
        assert torch.equal(change, torch.zeros_like(change)) and torch.equal(size, torch.zeros_like(size)), predictor
    measured = measure_operations(net.model, net.data, [op.heads(net.model, params)], max_images=None)
    assert torch.equal(measured["abs_change"], torch.zeros_like(measured["abs_change"]))
    assert torch.equal(measured["accuracy"][0], measured["base_accuracy"])


# ---------------------------------------------------------------------------- what the formula gets exactly


def singles(net):
    """Every single channel switched off, and scaled by 0.5, measured on the view's images."""
    prune, scale = OPERATIONS.get("prune"), OPERATIONS.get("scale")
    C = net.view.channels
    pruned = [prune.parse({"channels": [c]}, net.view) for c in range(C)]
    scaled = [scale.parse({"channels": [c], "alpha": 0.5}, net.view) for c in range(C)]
    fns = [prune.heads(net.model, p) for p in pruned] + [scale.heads(net.model, p) for p in scaled]
    m = measure_operations(net.model, net.data, fns, max_images=None)
    return {k: (v[:C], v[C:]) if v.dim() == 2 else v for k, v in m.items()}, pruned, scaled


@pytest.mark.parametrize("head", HEADS.names())
def test_where_pruning_removes_exactly_a_channels_term_the_measured_change_is_what_the_view_holds(nets, head):
    """For heads where switching channel c off removes exactly its term t_kc = w_kc pooled_kc (checked
    on the model, not assumed), with the view read on the images measured:

    - the mean |change| of logit k is the view's contribution mean |w_kc pooled_kc|, exactly;
    - the formula's change is -w_kc shown_kc / total_k and the measured one -w_kc mean(pooled_kc), so
      their signs agree exactly where pooled_kc has the sign of shown_kc = g_own(mbar_kc) on every image
      (and then |mean change| = mean |change|); for heads whose masks do not read the channel (scaling
      it by 0.5 scales exactly its term, checked on the model) the same holds for scale(c, 0.5);
    - linear heads (pooled = GAP(z), shown = mean |GAP(z)|): the mean |change| is the formula's size
      times the attribute's whole evidence, and the mean change is -w_kc mean GAP(z_c), which is the
      formula's change times the whole evidence where GAP(z_c) > 0 on every image.
    """
    net = nets(head)
    help_claims = "removes exactly its term" in HEADS.get(head).help
    assert net.exact or not help_claims, f"the {head} heads' help says pruning removes exactly a term; it does not"
    if not net.exact:
        pytest.skip(f"switching a channel of the {head} heads off moves the other terms (see test_heads.py)")
    prune, scale, view = OPERATIONS.get("prune"), OPERATIONS.get("scale"), net.view
    measured, pruned, scaled = singles(net)
    mean, absolute = measured["mean_change"][0], measured["abs_change"][0]      # (C, K)
    torch.testing.assert_close(absolute, view.contributions.T, rtol=1e-5, atol=1e-8)
    with torch.no_grad():
        pooled = (terms(net.model, net.x) / net.model.heads.weight).double()     # (B, K, C)
    shown = view.shown()                                                          # (K, C)
    same = (torch.sign(pooled) == torch.sign(shown)).all(0).T                     # (C, K)
    assert same.sum() >= same.numel() // 4, same                                  # the test has teeth
    torch.testing.assert_close(mean.abs()[same], absolute[same], rtol=1e-5, atol=1e-8)
    for o, (op, params) in enumerate(((prune, pruned), (scale, scaled))[:2 if net.linear_in_scale else 1]):
        predicted = torch.stack([op.predict(view, p).change for p in params])     # (C, K)
        got = measured["mean_change"][o]
        assert torch.equal(torch.sign(got[same]), torch.sign(predicted[same])), (op.name, got, predicted)
    if not net.model.has_masks:
        size = torch.stack([prune.predict(view, p).size for p in pruned])
        predicted = torch.stack([prune.predict(view, p).change for p in pruned])
        torch.testing.assert_close(absolute, size * view.total().view(1, -1), rtol=1e-5, atol=1e-8)
        with torch.no_grad():
            gap = net.model.encode(net.x)[0].mean((2, 3)).double()               # (B, C)
        torch.testing.assert_close(mean, -(view.weights * gap.mean(0)).T, rtol=1e-5, atol=1e-8)
        active = (gap > 0).all(0)                                                  # GAP(z_c) > 0 on every image
        assert active.any()
        torch.testing.assert_close(mean[active], predicted[active] * view.total().view(1, -1), rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------------------- one definition, two forms


@pytest.mark.parametrize("head,name", PAIRS)
def test_the_heads_only_form_equals_the_persistent_model_and_the_original_is_untouched(nets, head, name):
    net, op = applicable(nets, head, name)
    model, x = net.model, net.x[:8]
    before = model.operation_state()
    with torch.no_grad():
        z, context = model.encode(x)
        own = model(x).logits
        for p in examples(op, net.view):
            changed = op.persist(model, p)
            torch.testing.assert_close(op.heads(model, p)(z, context), changed(x).logits, rtol=1e-5, atol=1e-5)
            assert same_state(changed.operation_state(), op.apply(before, p))
            assert same_state(model.operation_state(), before)
        torch.testing.assert_close(model(x).logits, own, rtol=0, atol=0)


class Boom(Exception):
    pass


@pytest.mark.parametrize("head,name", PAIRS)
def test_perturbed_is_the_operation_and_puts_the_state_back_even_when_the_block_raises(nets, head, name):
    net, op = applicable(nets, head, name)
    model, x = net.model, net.x[:8]
    before = model.operation_state()
    with torch.no_grad():
        own = model(x).logits
        for p in examples(op, net.view)[:4]:
            state, persistent = op.apply(before, p), op.persist(model, p)(x).logits
            with pytest.raises(Boom):
                with model.perturbed(**state._asdict()):
                    assert same_state(model.operation_state(), state)
                    torch.testing.assert_close(model(x).logits, persistent, rtol=0, atol=0)
                    model.set_channel_keep(torch.zeros(net.view.channels))        # the block changes it too
                    raise Boom
            assert same_state(model.operation_state(), before)
        torch.testing.assert_close(model(x).logits, own, rtol=0, atol=0)


# ---------------------------------------------------------------------------- JSON, errors, the card


@pytest.mark.parametrize("head,name", PAIRS)
def test_the_json_form_reads_back_as_the_same_operation(nets, head, name):
    net, op = applicable(nets, head, name)
    for p in examples(op, net.view):
        spec = json.loads(json.dumps(op.to_json(p), allow_nan=False))
        assert spec.pop("operation") == name
        assert op.parse(spec, net.view) == p


@pytest.mark.parametrize("head,name", PAIRS)
def test_a_bad_spec_is_one_line_naming_the_key(nets, head, name):
    net, op = applicable(nets, head, name)
    base = base_spec(op, net.view)
    with pytest.raises(HPNetError) as error:
        op.parse({**base, "bogus": 1}, net.view)
    assert_one_line(error, "'bogus'")
    for field in op.fields:
        for bad in bad_values(field, net.view):
            with pytest.raises(HPNetError) as error:
                op.parse({**base, field.name: bad}, net.view)
            assert_one_line(error, field.name)


@pytest.mark.parametrize("head,name", PAIRS)
def test_the_card_as_json_holds_exactly_the_shown_attributes(nets, head, name):
    net, op = applicable(nets, head, name)
    attributes = list(net.view.attributes)
    for p in examples(op, net.view)[:4]:
        card = op.card(net.view, p)
        assert set(card.labels) == set(card.facts) and card.operation == name
        for index in (None, [1], [2, 0], []):
            shown = card.to_json(attributes, index)
            text = json.dumps(shown, allow_nan=False)
            assert json.loads(text) == shown
            wanted = list(range(len(attributes))) if index is None else index
            assert [row["attribute"] for row in shown["attributes"]] == [attributes[k] for k in wanted]
            for row, k in zip(shown["attributes"], wanted):
                assert set(row) == {"attribute", *card.facts}
                for fact, value in card.facts.items():
                    expected = value[k]
                    if expected.dim() == 0:
                        assert row[fact] == float(expected)
                    else:
                        assert row[fact] == pytest.approx(expected.tolist(), abs=1e-6)


# ---------------------------------------------------------------------------- the score


@pytest.fixture(scope="module")
def scores(nets):
    built = {}

    def get(head: str) -> dict:
        if head not in built:
            net = nets(head)
            built[head] = score_operations(net.model, net.data, net.view, PredictabilitySettings(**SCORE))
        return built[head]
    return get


@pytest.mark.parametrize("head", HEADS.names())
def test_the_score_runs_every_applicable_operation(nets, scores, head):
    net, s = nets(head), PredictabilitySettings(**SCORE)
    out = scores(head)
    assert list(out) == [n for n in OPERATIONS.names() if OPERATIONS.get(n).applies_to(net.view)]
    for name, entry in out.items():
        op = OPERATIONS.get(name)
        planned = op.scored(net.view, s)
        assert entry["operations"] == [op.to_json(p) for p in planned]
        assert math.isnan(entry["score"]) or -1 <= entry["score"] <= 1, (name, entry["score"])
        for key in ("predicted", "logit", "accuracy"):
            assert np.shape(entry["data"][key]) == (len(planned), len(NAMES)), (name, key)
        json.dumps(entry)


@pytest.mark.parametrize("head", HEADS.names())
def test_scaling_by_zero_measures_exactly_what_pruning_the_same_channels_measures(nets, scores, head):
    net, s = nets(head), PredictabilitySettings(**SCORE)
    prune, scale = OPERATIONS.get("prune"), OPERATIONS.get("scale")
    planned = scale.scored(net.view, s)
    zero = [p for p in planned if p.alpha == 0]
    assert zero, "the score draws no alpha = 0: choose another seed or more channel sets"
    off = [prune.parse({"channels": list(p.channels)}, net.view) for p in zero]
    measured = measure_operations(net.model, net.data, [scale.heads(net.model, p) for p in zero] +
                                  [prune.heads(net.model, p) for p in off], s.max_images)
    n = len(zero)
    for key in ("mean_change", "abs_change", "accuracy"):
        assert torch.equal(measured[key][:n], measured[key][n:]), key
    logit = scores(head)["scale"]["data"]["logit"]                                  # the score's own numbers
    rows = [i for i, p in enumerate(planned) if p.alpha == 0]
    assert [logit[i] for i in rows] == rounded(per_std(measured["mean_change"][n:], measured["logit_std"]))


# ---------------------------------------------------------------------------- scale against prune


@pytest.mark.parametrize("head", HEADS.names())
def test_scales_formula_is_alpha_minus_one_times_the_evidence_pruning_removes(nets, head):
    net = nets(head)
    prune, scale = OPERATIONS.get("prune"), OPERATIONS.get("scale")
    C = net.view.channels

    @settings(max_examples=60, deadline=None, derandomize=True, database=None)
    @given(channels=st.sets(st.integers(0, C - 1), min_size=1), alpha=st.floats(0, 2))
    def check(channels, alpha):
        channels = sorted(channels)
        for view in scale.predictors(net.view).values():
            scaled = scale.predict(view, scale.parse({"channels": channels, "alpha": alpha}, view))
            off = prune.predict(view, prune.parse({"channels": channels}, view))
            assert torch.equal(scaled.change, (alpha - 1) * -off.change)
            assert torch.equal(scaled.size, abs(alpha - 1) * off.size)
    check()


def test_a_tone_curve_given_per_attribute_refuses_an_attributes_key(nets):
    view = nets("attention").view
    K = len(view.attributes)
    with pytest.raises(HPNetError, match="attributes goes with one n and one beta"):
        OPERATIONS.get("tone").parse({"n": [2.0] * K, "attributes": [view.attributes[0]]}, view)
