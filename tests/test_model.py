"""The network: shapes, invariants over every configuration, persistence, operation state."""
import pytest
import torch

from hpnet.errors import HPNetError
from hpnet.model import HPNet, ModelConfig, count_macs, count_parameters

NAMES = ["Smiling", "Male", "Eyeglasses"]
CONFIGS = [
    dict(backbone="paper", widths=(4, 8, 8, 8)),
    dict(backbone="strided", widths=(4, 8, 8, 8)),
    dict(backbone="paper", widths=(4, 8, 8, 8), head="linear"),
    dict(backbone="paper", widths=(4, 8, 8, 8), head_impl="naive"),
    dict(backbone="strided", widths=(4, 8, 8, 8), head="channel"),
    dict(backbone="strided", widths=(4, 8, 8, 8), head="context"),
]


def tiny(seed: int = 0, **kw) -> HPNet:
    torch.manual_seed(seed)
    return HPNet(ModelConfig(NAMES, **{**CONFIGS[0], **kw}))


@pytest.mark.parametrize("kw", CONFIGS)
def test_shapes_no_nans_and_every_parameter_gets_a_gradient(kw):
    model = tiny(**kw).train()
    x = torch.rand(2, 3, 16, 16)
    out = model(x)
    assert out.logits.shape == (2, 3) and torch.isfinite(out.logits).all()
    (out.logits.sum() + out.mask_l1).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_paper_default_is_table_1():
    model = HPNet(ModelConfig(NAMES))
    convs = [block[0] for block in model.extractor]
    assert [c.out_channels for c in convs] == [32, 64, 64, 128]
    assert [c.dilation[0] for c in convs] == [1, 2, 3, 2]
    assert [c.padding[0] for c in convs] == [1, 2, 3, 2]
    assert all(c.stride[0] == 1 for c in convs)
    z = model.features(torch.rand(1, 3, 20, 20))
    assert z.shape == (1, 128, 20, 20)  # no downsampling


def test_strided_backbone_downsamples_by_eight():
    model = tiny(backbone="strided")
    assert model.features(torch.rand(1, 3, 32, 32)).shape == (1, 8, 4, 4)
    masks = model.masks(model.features(torch.rand(1, 3, 32, 32)))
    assert masks.shape == (1, 3, 8, 4, 4)


def test_logits_follow_the_papers_equation():
    model = tiny().eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        z = model.features(x)
        m = model.masks(z)                                      # (B, K, C, H, W)
        pooled = (m * z[:, None]).mean(dim=(-2, -1))           # GAP(M * z): (B, K, C)
        expected = (pooled * model.heads.weight).sum(-1) + model.heads.bias
        out = model(x)
    torch.testing.assert_close(out.logits, expected, rtol=1e-5, atol=1e-6)
    # default l1 normalisation: sum over k, c; mean over positions and images
    torch.testing.assert_close(out.mask_l1, m.sum(dim=(1, 2)).mean(), rtol=1e-5, atol=1e-6)


def test_l1_normalisations_differ_by_their_stated_factors():
    x = torch.rand(2, 3, 16, 16)
    values = {norm: tiny(l1_norm=norm).eval()(x).mask_l1 for norm in ("position_mean", "mean", "sum")}
    torch.testing.assert_close(values["sum"], values["position_mean"] * 256)
    torch.testing.assert_close(values["mean"], values["position_mean"] / (3 * 8))


def test_fused_equals_naive_in_eval():
    a, b = tiny(head_chunk_mb=0), tiny(head_impl="naive")
    x = torch.rand(3, 3, 16, 16)
    torch.testing.assert_close(a.eval()(x).logits, b.eval()(x).logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("head", ["attention", "context"])
def test_inference_runs_the_extractor_in_chunks_with_the_same_features(head, monkeypatch):
    import hpnet.model.network as network
    model = tiny(head=head, backbone="strided").eval()
    x = torch.rand(5, 3, 16, 16)
    with torch.enable_grad():
        whole = model.encode(x)                                    # gradients: one call
    monkeypatch.setattr(network, "EXTRACT_CHUNK_BYTES", 2 * 8 * 2 * 2 * 4)     # z of two images per call
    calls = []
    model.extractor.last_conv.register_forward_hook(lambda m, inputs, out: calls.append(inputs[0].shape[0]))
    with torch.no_grad():
        chunked = model.encode(x)
        assert calls == [1, 2, 2]                                  # the first alone sets the chunk
        for a, b in zip(chunked, whole):
            assert (a is None and b is None) or torch.allclose(a, b, atol=1e-6)
        calls.clear()
        model.train()(x)                                           # BatchNorm's batch statistics: whole
        assert calls == [5]


def test_channel_keep_zeroes_features():
    model = tiny().eval()
    keep = torch.tensor([1, 0, 1, 1, 0, 1, 1, 1.0])
    model.set_channel_keep(keep)
    z = model.features(torch.rand(1, 3, 16, 16))
    assert z[:, 1].abs().max() == 0 and z[:, 4].abs().max() == 0 and z[:, 0].abs().max() > 0


def test_identity_transform_changes_nothing_and_others_do():
    model = tiny().eval()
    x = torch.rand(2, 3, 16, 16)
    base = model(x).logits
    model.set_transform(1.0, 0.0)
    torch.testing.assert_close(model(x).logits, base)
    model.set_transform(torch.tensor([1.0, 3.0, 1.0]), torch.tensor([0.0, 0.3, 0.0]))
    changed = model(x).logits
    torch.testing.assert_close(changed[:, [0, 2]], base[:, [0, 2]])
    assert not torch.allclose(changed[:, 1], base[:, 1])


def test_save_load_is_bit_identical_and_keeps_operation_state(tmp_path):
    model = tiny(backbone="strided").eval()
    model.set_transform(torch.tensor([2.0, 1.0, 4.0]), torch.tensor([0.1, 0.0, 0.5]))
    model.set_channel_keep(torch.tensor([1, 1, 0, 1, 1, 1, 0, 1.0]))
    model.save(tmp_path)
    loaded = HPNet.load(tmp_path)
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(model(x).logits, loaded(x).logits)
    assert loaded.config == model.config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]


def test_loading_a_checkpoint_of_another_config_names_the_file(tmp_path):
    tiny().save(tmp_path)
    other = HPNet(ModelConfig(NAMES, widths=(4, 8, 8, 16)))
    from hpnet.io import load_tensors
    with pytest.raises(HPNetError, match=r"model\.safetensors: checkpoint does not match the model config"):
        other.load_tensors(load_tensors(tmp_path / "model.safetensors"), tmp_path / "model.safetensors")


def test_bad_configs_are_one_line_errors():
    with pytest.raises(HPNetError, match="--backbone must be"):
        ModelConfig(NAMES, backbone="resnet")
    with pytest.raises(HPNetError, match="one dilation per layer"):
        ModelConfig(NAMES, widths=(4, 8))
    with pytest.raises(HPNetError, match="duplicate attribute"):
        ModelConfig(["a", "a"])


def test_linear_head_has_no_masks():
    model = tiny(head="linear")
    with pytest.raises(HPNetError, match="no attention masks"):
        model.masks(torch.rand(1, 8, 4, 4))


def test_counts():
    model = tiny()
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    # extractor 3*4*9 + 4*8*9 + 8*8*9 + 8*8*9 per position; heads K*C*C + 2*K*C per position
    per_pos = (3 * 4 + 4 * 8 + 8 * 8 + 8 * 8) * 9 + 3 * 8 * 8 + 2 * 3 * 8
    assert count_macs(model, 16) == per_pos * 256 + 3 * 8


@pytest.mark.parametrize("backbone", ["paper", "strided"])
def test_inference_folds_batchnorm_into_the_convolutions_with_the_same_features(backbone):
    torch.manual_seed(0)
    model = tiny(head="context", backbone=backbone).eval()
    for block in model.extractor:                              # running statistics and affine terms far from 0 / 1
        block[1].running_mean.normal_()
        block[1].running_var.uniform_(0.5, 2.0)
        block[1].weight.data.normal_()
        block[1].bias.data.normal_()
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        folded = model.extractor.with_previous(x)
        u = x
        for block in list(model.extractor)[:-1]:
            u = block(u)                                       # the modules: conv, BatchNorm, LeakyReLU
        assert torch.allclose(folded[1], u, rtol=1e-5, atol=1e-6)
        assert torch.allclose(folded[0], model.extractor[-1](u), rtol=1e-5, atol=1e-6)
        calls = []
        handle = model.extractor[0][1].register_forward_hook(lambda *args: calls.append(1))
        hooked = model.extractor.with_previous(x)                # a hooked block runs as its modules
        handle.remove()
    assert calls == [1] and torch.allclose(hooked[0], folded[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("head", ["channel", "linear", "attention"])
def test_inference_runs_the_light_heads_on_each_chunk_with_the_same_logits(head, monkeypatch):
    import hpnet.model.network as network
    model = tiny(head=head, backbone="strided").eval()
    x = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        whole = model(x)                                       # z of 5 images fits: one call
    monkeypatch.setattr(network, "EXTRACT_CHUNK_BYTES", 2 * 8 * 2 * 2 * 4)     # z of two images per call
    calls = []
    model.heads.register_forward_pre_hook(lambda m, inputs: calls.append(inputs[0].shape[0]))
    with torch.no_grad():
        chunked = model(x)
    # channel and linear heads run per chunk; the dense matrix products of the paper's on the batch
    assert calls == ([1, 2, 2] if head != "attention" else [5])
    assert torch.allclose(chunked.logits, whole.logits, rtol=1e-5, atol=1e-6)
    assert torch.allclose(chunked.mask_l1, whole.mask_l1, rtol=1e-5, atol=1e-7)
