"""The channel heads' compiled loops equal the naive reference in outputs, the L1 term and every
gradient, for every tile shape, with and without the tone curve; gradcheck holds their float64
build; the torch-op blocks (the CUDA path) equal the same reference."""
import copy

import pytest
import torch
import torch.nn.functional as F

from hpnet.model import HPNet, ModelConfig, _channel_kernels
from hpnet.model import channel_fused as channel_module
from hpnet.model.channel_fused import channel_heads, channel_pooled_many, plan_tiles
from hpnet.model.heads import ChannelHeads

NAMES = ["Smiling", "Male", "Eyeglasses", "Young", "Bald"]
RTOL = 1e-4


@pytest.fixture(autouse=True)
def compiled():
    if _channel_kernels.library() is None:
        pytest.skip("no C compiler: the compiled loops are unavailable")


def close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """Equal to 1e-4 of the reference's largest magnitude."""
    scale = expected.abs().max().clamp_min(1e-12)
    err = (actual - expected).abs().max() / scale
    assert err <= RTOL, f"{what}: relative error {err:.2e}"


def random_heads(B, K, C, H, W, transform, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, C, H, W, generator=g, dtype=dtype).requires_grad_()
    D = (torch.randn(K, C, 3, 3, generator=g, dtype=dtype) / 2).requires_grad_()
    a = (0.5 * torch.randn(K, C, generator=g, dtype=dtype)).requires_grad_()
    n = 0.5 + 2.5 * torch.rand(K, generator=g, dtype=dtype) if transform else torch.ones(K, dtype=dtype)
    beta = 0.6 * torch.rand(K, generator=g, dtype=dtype) if transform else torch.zeros(K, dtype=dtype)
    return z, D, a, n, beta


def naive(z, D, a, n, beta, transform):
    """The naive reference: ChannelHeads through the whole (B, K, C, HW) mask tensor (the tone
    curve is applied where n, beta are not the identity, as in the model)."""
    heads = ChannelHeads(D.shape[0], D.shape[1], impl="naive")
    for name, value in (("mask_weight", D), ("mask_bias", a)):   # the very tensors: gradients reach them
        delattr(heads, name)
        setattr(heads, name, value)
    heads.transform_n, heads.transform_beta = n, beta
    return heads._pooled(z, None)


def outputs_and_grads(fn, z, D, a, n, beta, transform, seed=1):
    pooled, msum = fn(z, D, a, n, beta, transform)
    g = torch.Generator().manual_seed(seed)
    gp, gs = torch.randn(pooled.shape, generator=g, dtype=z.dtype), torch.randn(msum.shape, generator=g, dtype=z.dtype)
    grads = torch.autograd.grad((pooled * gp).sum() + (msum * gs).sum(), (z, D, a))
    return [pooled, msum, *grads]


# (B, K, C, H, W, (images, channels, rows) per tile): one plane per tile and one row per strip,
# short last blocks of images, channels and rows, one tile for everything, a single row or column
CASES = [
    (2, 3, 4, 5, 4, (1, 1, 1)),
    (3, 5, 5, 5, 6, (2, 3, 2)),
    (2, 4, 6, 7, 6, (2, 4, 3)),
    (3, 3, 4, 6, 6, (3, 4, 6)),
    (2, 2, 3, 1, 5, (1, 2, 1)),
    (2, 2, 3, 6, 1, (2, 1, 4)),
]
IDS = [f"B{c[0]}K{c[1]}C{c[2]}H{c[3]}W{c[4]}tile{c[5]}" for c in CASES]


@pytest.mark.parametrize("transform", [False, True], ids=["identity", "transformed"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_compiled_loops_equal_naive(case, transform):
    B, K, C, H, W, tiles = case
    inputs = random_heads(B, K, C, H, W, transform)
    expected = outputs_and_grads(naive, *inputs, transform)
    actual = outputs_and_grads(lambda *args: channel_heads(*args, tiles=tiles), *inputs, transform)
    for what, x, y in zip(("pooled", "mask sum", "grad z", "grad D", "grad a"), actual, expected):
        assert x.shape == y.shape and x.dtype == y.dtype, what
        close(x, y, what)


@pytest.fixture(scope="module")
def portable_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("portable-loops")   # built once for the module


@pytest.fixture
def portable(monkeypatch, portable_cache):
    """The loops built without their AVX-512 versions (what CPUs without AVX-512 run)."""
    monkeypatch.setattr(_channel_kernels, "SOURCE", _channel_kernels.SOURCE.replace("#define AVX512 1", "#define AVX512 0"))
    monkeypatch.setattr(_channel_kernels.library, "tried", False)
    monkeypatch.setattr(_channel_kernels.library, "lib", None)
    monkeypatch.setenv("HPNET_KERNEL_CACHE", str(portable_cache))
    assert _channel_kernels.library() is not None


@pytest.mark.parametrize("transform", [False, True], ids=["identity", "transformed"])
@pytest.mark.parametrize("case", CASES[1:3] + CASES[4:], ids=IDS[1:3] + IDS[4:])
def test_the_portable_loops_equal_naive(case, transform, portable):
    B, K, C, H, W, tiles = case
    inputs = random_heads(B, K, C, H, W, transform)
    expected = outputs_and_grads(naive, *inputs, transform)
    actual = outputs_and_grads(lambda *args: channel_heads(*args, tiles=tiles), *inputs, transform)
    for what, x, y in zip(("pooled", "mask sum", "grad z", "grad D", "grad a"), actual, expected):
        close(x, y, what)


@pytest.mark.parametrize("transform", [False, True], ids=["identity", "transformed"])
@pytest.mark.parametrize("tiles", [(1, 1, 1), (2, 2, 2), (2, 3, 5)], ids=["plane-row", "blocks", "whole"])
def test_the_float64_loops_pass_gradcheck(transform, tiles):
    z, D, a, n, beta = random_heads(2, 2, 3, 5, 4, transform, dtype=torch.float64)
    fn = lambda z, D, a: channel_heads(z, D, a, n, beta, transform, tiles=tiles)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (z, D, a))


def test_channels_last_features_give_the_same_heads():
    z, D, a, n, beta = random_heads(2, 3, 8, 5, 5, True)
    expected = naive(z, D, a, n, beta, True)
    actual = channel_heads(z.contiguous(memory_format=torch.channels_last), D, a, n, beta, True, tiles=(1, 3, 2))
    for x, y in zip(actual, expected):
        close(x, y, "channels_last")


@pytest.mark.parametrize("transform", [False, True], ids=["identity", "transformed"])
def test_results_are_bit_identical_for_any_thread_count(transform):
    inputs = random_heads(4, 3, 6, 5, 5, transform)
    runs = {t: outputs_and_grads(lambda *args: channel_heads(*args, tiles=(2, 2, 2), threads=t), *inputs, transform)
            for t in (1, 2, 3)}
    for t in (2, 3):
        assert all(torch.equal(x, y) for x, y in zip(runs[1], runs[t])), t


@pytest.mark.parametrize("tiles", [(1, 1, 1), (3, 2, 3), None], ids=["plane-row", "blocks", "planned"])
def test_many_transformations_at_once_equal_one_at_a_time(tiles):
    z, D, a, _, _ = random_heads(3, 3, 5, 5, 4, False)
    g = torch.Generator().manual_seed(5)
    n = torch.cat([torch.ones(1, 3), 0.5 + 3.0 * torch.rand(3, 3, generator=g)])      # (4, K), row 0 identity
    beta = torch.cat([torch.zeros(1, 3), 0.6 * torch.rand(3, 3, generator=g)])
    many = channel_pooled_many(z, D, a, n, beta, tiles=tiles)
    assert many.shape == (4, 3, 3, 5) and not many.requires_grad
    for t in range(4):
        close(many[t], naive(z, D, a, n[t], beta[t], True)[0], f"transformation {t}")


def test_saturated_masks_with_a_transformation():
    """Masks at exactly 0, 0.5 and 1 (|d| = 1 or 0 in the tone curve) give the reference values."""
    z, D, a, n, beta = random_heads(2, 3, 4, 4, 4, True)
    with torch.no_grad():
        D.mul_(200.0)          # logits of +-100s: sigmoid 0 or 1 in float32
        D[1].zero_()           # head 1: M = sigmoid(a), exactly 0.5 where a = 0
        a[1, :2] = 0.0
    for x, y in zip(channel_heads(z, D, a, n, beta, True, tiles=(1, 2, 2)), naive(z, D, a, n, beta, True)):
        close(x, y, "saturated")


def test_an_empty_batch_gives_empty_outputs():
    z, D, a, n, beta = random_heads(1, 3, 4, 3, 3, False)
    pooled, msum = channel_heads(z[:0], D, a, n, beta, False)
    assert pooled.shape == (0, 3, 4) and msum.shape == (0, 3)
    assert channel_pooled_many(z[:0], D, a, n, beta).shape == (1, 0, 3, 4)


def test_tile_plans_cover_whole_planes():
    assert plan_tiles(32, 128, 64, 64) == (8, 16, 16)     # the paper's config: 32 tiles, strips of 16 rows
    assert plan_tiles(2, 5, 3, 4000) == (1, 5, 1)
    assert plan_tiles(1, 200, 8, 8) == (1, 16, 8)


def model_pair(backbone, seed=0):
    torch.manual_seed(seed)
    config = ModelConfig(NAMES, backbone=backbone, widths=(4, 6, 6, 8), head="channel")
    fused = HPNet(config)
    naive_model = copy.deepcopy(fused)
    naive_model.config = copy.deepcopy(config)
    naive_model.heads.impl = "naive"
    return fused, naive_model


def loss_and_grads(model, x, y):
    x = x.clone().requires_grad_()
    out = model(x)
    loss = F.binary_cross_entropy_with_logits(out.logits, y) + 0.3 * out.mask_l1
    names = [n for n, _ in model.named_parameters()]
    grads = torch.autograd.grad(loss, [p for _, p in model.named_parameters()] + [x])
    return out, dict(zip(names + ["input"], grads))


@pytest.mark.parametrize("kernels", [True, False], ids=["compiled", "torch-ops"])
@pytest.mark.parametrize("transform", [False, True], ids=["identity", "transformed"])
@pytest.mark.parametrize("backbone", ["paper", "strided"])
def test_model_with_channel_heads_equals_naive_in_training(backbone, transform, kernels, monkeypatch):
    """The whole network, on the compiled loops and on the torch-op blocks that CUDA runs."""
    monkeypatch.setattr(channel_module, "USE_KERNELS", kernels)
    fused, naive_model = model_pair(backbone)
    fused.heads.chunk_mb = 1e-3                         # torch ops: several blocks of heads and images
    if transform:
        for m in (fused, naive_model):
            m.set_transform(torch.tensor([1.0, 2.0, 0.7, 3.0, 1.5]), torch.tensor([0.0, 0.2, 0.5, 0.1, 0.3]))
    x, y = torch.rand(3, 3, 16, 16), (torch.rand(3, len(NAMES)) > 0.5).float()
    out_f, grads_f = loss_and_grads(fused.train(), x, y)
    out_n, grads_n = loss_and_grads(naive_model.train(), x, y)
    close(out_f.logits, out_n.logits, "logits")
    close(out_f.mask_l1, out_n.mask_l1, "L1 term")
    for name in grads_n:
        close(grads_f[name], grads_n[name], name)
    with torch.no_grad():
        n, beta = torch.tensor([[1.0] * 5, [2.0, 0.5, 4.0, 1.0, 1.5]]), torch.tensor([[0.0] * 5, [0.2, 0.0, 0.5, 0.1, 0.0]])
        z, _ = fused.eval().encode(x)
        close(fused.heads.logits_under(z, n, beta), naive_model.eval().heads.logits_under(z, n, beta), "logits_under")


def test_the_compiled_loops_are_used_where_they_apply(monkeypatch):
    calls = []
    monkeypatch.setattr(channel_module, "channel_heads", lambda *a, **k: calls.append(1) or (torch.zeros(2, 5, 8),
                                                                                            torch.zeros(2, 5)))
    fused, _ = model_pair("strided")
    fused(torch.rand(2, 3, 16, 16))
    assert calls == [1]
    z = torch.rand(2, 8, 4, 4)
    assert channel_module.usable(z) and channel_module.usable(z.double())
    assert not channel_module.usable(z.bfloat16())
    monkeypatch.setattr(channel_module, "USE_KERNELS", False)
    assert not channel_module.usable(z)


def test_without_a_compiler_the_heads_fall_back_to_torch_ops(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(_channel_kernels.library, "tried", False)
    monkeypatch.setattr(_channel_kernels.library, "lib", None)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("HPNET_KERNEL_CACHE", str(tmp_path / "cache"))
    assert _channel_kernels.library() is None
    assert "the channel heads are unavailable" in capsys.readouterr().err
    fused, naive_model = model_pair("strided")
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        close(fused(x).logits, naive_model(x).logits, "fallback")
