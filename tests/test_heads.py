"""The head families: the blocked path against the naive reference, per-channel terms that add up to the
logit, pruning that removes exactly a channel's term, physical == masked, round trips, transformation."""
import pytest
import torch

from hpnet.errors import HPNetError
from hpnet.model import HEADS, HPNet, ModelConfig, count_macs
from hpnet.ops.pruning import masked_model, prune_physical

NAMES = ["Smiling", "Male", "Eyeglasses"]
MASKED = [h for h in HEADS.names() if HEADS.get(h).masks]            # every head family with masks
# every family but the paper's, whose masks read every channel (test_the_papers_head_moves_every_other_term...):
# a new family is held to "pruning a channel removes exactly its term" unless it says otherwise here
ADDITIVE = [h for h in HEADS.names() if h != "attention"]


def tiny(head: str, backbone: str = "strided", seed: int = 0, **kw) -> HPNet:
    torch.manual_seed(seed)
    model = HPNet(ModelConfig(NAMES, backbone=backbone, widths=(4, 6, 8), dilations=(1, 2, 1), head=head, **kw))
    with torch.no_grad():
        for m in model.modules():  # trained-looking BatchNorm statistics and mask biases
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
        if model.has_masks:
            model.heads.mask_bias.uniform_(-1, 1)
    return model.eval()


def terms(model: HPNet, x: torch.Tensor) -> torch.Tensor:
    """Each channel's term of each logit, w_kc * mean_hw(g(M_kc) z_c): (B, K, C)."""
    z, context = model.encode(x)
    return model.heads.pooled(z, context) * model.heads.weight


def test_the_registry_lists_every_family():
    assert HEADS.names() == ["attention", "channel", "context", "linear"]


@pytest.mark.parametrize("backbone", ["paper", "strided"])
@pytest.mark.parametrize("head", MASKED)
@pytest.mark.parametrize("transform", [False, True])
def test_blocked_heads_equal_the_naive_reference_with_gradients(head, backbone, transform):
    blocked = tiny(head, backbone, head_chunk_mb=1e-4).train()      # one head per block: several blocks
    naive = tiny(head, backbone, head_impl="naive").train()
    naive.load_state_dict(blocked.state_dict())
    if transform:
        for m in (blocked, naive):
            m.set_transform(torch.tensor([2.0, 1.0, 0.5]), torch.tensor([0.3, 0.0, 0.1]))
    tiles = [(zi.shape[0], heads) for zi, _, heads in blocked.heads._tiles(torch.zeros(2, 8, 4, 4), None)]
    assert tiles == [(1, [(0, 1), (1, 2), (2, 3)])] * 2       # a head of an image per tile: 6 tiles
    x = torch.rand(4, 3, 16, 16)
    outs = []
    for m in (blocked, naive):
        out = m(x)
        (out.logits.pow(2).sum() + out.mask_l1).backward()
        outs.append((out.logits.detach(), out.mask_l1.detach(), {n: p.grad.clone() for n, p in m.named_parameters()}))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-5, atol=1e-6)
    for name in outs[0][2]:
        torch.testing.assert_close(outs[0][2][name], outs[1][2][name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("head", HEADS.names())
def test_logits_are_the_bias_plus_the_sum_of_the_channels_terms(head):
    model = tiny(head)
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(terms(model, x).sum(-1) + model.heads.bias, model(x).logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("budget_mb,expected", [(1e-4, [(1, 1)] * 4), (2 * 8 * 16 * 4 / 2 ** 20, [(2, 1)] * 2),
                                               (4 * 8 * 16 * 4 / 2 ** 20, [(4, 1)]), (1.0, [(4, 3)])])
def test_tiles_keep_their_masks_within_the_budget(budget_mb, expected):
    heads = tiny("channel", head_chunk_mb=budget_mb).heads         # one head of one image: 8 x 16 x 4 bytes
    tiles = [(zi.shape[0], h1 - h0) for zi, _, blocks in heads._tiles(torch.zeros(4, 8, 4, 4), None)
             for h0, h1 in blocks[:1]]
    assert tiles == expected


def test_a_per_channel_mask_reads_its_own_channel_only():
    model = tiny("channel")
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        z, _ = model.encode(x)
        w, b = model.heads.mask_weight, model.heads.mask_bias        # (K, C, 3, 3), (K, C)
        c = 5
        by_hand = torch.nn.functional.conv2d(z[:, c:c + 1], w[:, c:c + 1], padding=1) + b[:, c].view(1, -1, 1, 1)
        torch.testing.assert_close(model.masks(z)[:, :, c], torch.sigmoid(by_hand), rtol=1e-5, atol=1e-6)
        term = (w.new_tensor(1.0) * model.heads.weight[:, c] * (torch.sigmoid(by_hand) * z[:, c:c + 1]).mean((2, 3)))
        torch.testing.assert_close(terms(model, x)[:, :, c], term, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("head", ADDITIVE)
@pytest.mark.parametrize("transform", [False, True])
def test_pruning_a_channel_removes_exactly_its_term(head, transform):
    model = tiny(head)
    if transform and not model.has_masks:
        pytest.skip(f"the {head} heads have no masks to transform")
    if transform:
        model.set_transform(torch.tensor([2.0, 1.0, 4.0]), torch.tensor([0.2, 0.0, 0.5]))
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        before, parts = model(x).logits, terms(model, x)
        for pruned in ([3], [0, 5, 7]):
            keep = torch.ones(8)
            keep[pruned] = 0
            model.set_channel_keep(keep)
            expected = before - parts[:, :, pruned].sum(-1)
            torch.testing.assert_close(model(x).logits, expected, rtol=1e-5, atol=1e-5)
            model.set_channel_keep(torch.ones(8))


def test_the_papers_head_moves_every_other_term_when_a_channel_is_pruned():
    model = tiny("attention")
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        model.heads.mask_weight.mul_(10)                 # masks that lean on other channels, as trained ones do
        before, parts = model(x).logits, terms(model, x)
        keep = torch.ones(8)
        keep[3] = 0
        model.set_channel_keep(keep)
        moved = (model(x).logits - (before - parts[:, :, 3])).abs().max()
        assert moved > 100 * 1e-5 * before.abs().max()   # far above float error: the other masks moved


@pytest.mark.parametrize("head", HEADS.names())
def test_physical_pruning_equals_the_masked_model(head):
    model, x = tiny(head), torch.rand(3, 3, 16, 16)
    kept = [6, 1, 3, 4]
    small = prune_physical(model, kept)
    assert small.config.widths[-1] == 4 and small.config.head == head
    with torch.no_grad():
        torch.testing.assert_close(small(x).logits, masked_model(model, kept)(x).logits, rtol=1e-5, atol=1e-5)
    assert count_macs(small, 16) < count_macs(model, 16)


@pytest.mark.parametrize("head", HEADS.names())
def test_save_load_round_trip_keeps_everything(head, tmp_path):
    model = tiny(head)
    if model.has_masks:
        model.set_transform(torch.tensor([2.0, 1.0, 4.0]), torch.tensor([0.1, 0.0, 0.5]))
    model.set_channel_keep(torch.tensor([1, 1, 0, 1, 1, 1, 0, 1.0]))
    model.save(tmp_path)
    loaded = HPNet.load(tmp_path)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded(x).logits)
    assert loaded.config == model.config


@pytest.mark.parametrize("head", MASKED)
def test_logits_under_equal_setting_the_transformation(head):
    model = tiny(head)
    x = torch.rand(3, 3, 16, 16)
    n, beta = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.5, 4.0]]), torch.tensor([[0.0, 0.0, 0.0], [0.2, 0.0, 0.5]])
    with torch.no_grad():
        z, context = model.encode(x)
        under = model.heads.logits_under(z, n, beta, context)
        for t in range(2):
            model.set_transform(n[t], beta[t])
            torch.testing.assert_close(under[t], model(x).logits, rtol=1e-5, atol=1e-6)


def test_context_masks_do_not_move_when_channels_are_pruned():
    model = tiny("context")
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        z, context = model.encode(x)
        before = model.masks(z, context=context)
        model.set_channel_keep(torch.tensor([1, 0, 1, 1, 0, 1, 1, 1.0]))
        z2, context2 = model.encode(x)
        assert torch.equal(context, context2)
        torch.testing.assert_close(model.masks(z2, context=context2), before)
    with pytest.raises(HPNetError, match="model.encode"):
        model.heads(z)                                                # forgot the context


def test_the_context_head_needs_a_previous_block():
    with pytest.raises(HPNetError, match="--head context reads the previous block's output"):
        ModelConfig(NAMES, backbone="strided", widths=(8,), head="context")
