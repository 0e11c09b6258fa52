"""The fused attention heads equal the naive reference in outputs, the L1 term and every gradient."""
import copy

import pytest
import torch
import torch.nn.functional as F

from hpnet.model import _kernels
from hpnet.model import fused as fused_module
from hpnet.model.fused import fused_heads, fused_pooled_many
from hpnet.model.tiles import CPU_TILE_BYTES_FALLBACK, cpu_tile_bytes, plan_tiles
from hpnet.model import HPNet, ModelConfig
from hpnet.model.heads import _head_chunk

NAMES = ["Smiling", "Male", "Eyeglasses", "Young", "Bald"]
RTOL = 1e-4


def close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """Equal to 1e-4 of the reference's largest magnitude (elementwise relative error is
    meaningless for entries that cancel to near zero)."""
    scale = expected.abs().max().clamp_min(1e-12)
    err = (actual - expected).abs().max() / scale
    assert err <= RTOL, f"{what}: relative error {err:.2e}"


def random_heads(B, K, C, H, transform, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, C, H, H, generator=g).requires_grad_()
    A = (torch.randn(K, C, C, generator=g) / C ** 0.5).requires_grad_()
    a = (0.5 * torch.randn(K, C, generator=g)).requires_grad_()
    n = 0.5 + 2.5 * torch.rand(K, generator=g) if transform else torch.ones(K)
    beta = 0.6 * torch.rand(K, generator=g) if transform else torch.zeros(K)
    return z, A, a, n, beta


def heads_and_grads(fn, z, A, a, n, beta, transform, seed=1):
    pooled, msum = fn(z, A, a, n, beta, transform)
    g = torch.Generator().manual_seed(seed)
    gp, gs = torch.randn(pooled.shape, generator=g), torch.randn(msum.shape, generator=g)
    grads = torch.autograd.grad((pooled * gp).sum() + (msum * gs).sum(), (z, A, a))
    return [pooled, msum, *grads]


def naive(z, A, a, n, beta, transform):
    return _head_chunk(z.reshape(z.shape[0], z.shape[1], -1), A, a, n, beta, transform)


# (B, K, C, H, (heads, columns) per tile): heads that do not divide K, blocks inside one image,
# blocks of several whole images with a short last block, one tile for everything
CASES = [
    (3, 5, 6, 4, (2, 4)),
    (3, 5, 6, 4, (3, 8)),
    (4, 7, 8, 5, (4, 50)),
    (5, 5, 6, 4, (5, 32)),
    (2, 3, 4, 3, (3, 18)),
]


@pytest.fixture(params=[True, False], ids=["compiled", "torch-ops"])
def kernels(request, monkeypatch):
    """Run a test with the compiled per-tile loops (hpnet.model._kernels) and with torch ops only."""
    if request.param and _kernels.library() is None:
        pytest.skip("no C compiler: the compiled loops are unavailable")
    monkeypatch.setattr(fused_module, "USE_KERNELS", request.param)
    return request.param


@pytest.mark.parametrize("transform", [False, True], ids=["identity", "transformed"])
@pytest.mark.parametrize("case", CASES, ids=[f"B{c[0]}K{c[1]}C{c[2]}H{c[3]}tile{c[4]}" for c in CASES])
def test_fused_function_equals_naive(case, transform, kernels):
    B, K, C, H, tiles = case
    inputs = random_heads(B, K, C, H, transform)
    expected = heads_and_grads(naive, *inputs, transform)
    fused = lambda *args: fused_heads(*args, tiles=tiles)  # noqa: E731
    actual = heads_and_grads(fused, *inputs, transform)
    for what, x, y in zip(("pooled", "mask sum", "grad z", "grad A", "grad a"), actual, expected):
        assert x.shape == y.shape, what
        close(x, y, what)


@pytest.mark.parametrize("transform", [False, True], ids=["identity", "transformed"])
def test_fused_backward_passes_gradcheck(transform):
    z, A, a, n, beta = (t.detach().double().requires_grad_(t.requires_grad)
                        for t in random_heads(2, 3, 3, 3, transform))
    fn = lambda z, A, a: fused_heads(z, A, a, n, beta, transform, tiles=(2, 3))  # noqa: E731
    assert torch.autograd.gradcheck(fn, (z, A, a))


def context_heads(B, K, C, U, H, transform, seed=0):
    """Heads whose masks read context features u (B, U, H, H): A (K, C, U)."""
    z, _, a, n, beta = random_heads(B, K, C, H, transform, seed)
    g = torch.Generator().manual_seed(seed + 7)
    u = torch.randn(B, U, H, H, generator=g).requires_grad_()
    A = (torch.randn(K, C, U, generator=g) / U ** 0.5).requires_grad_()
    return z, u, A, a, n, beta


@pytest.mark.parametrize("transform", [False, True], ids=["identity", "transformed"])
@pytest.mark.parametrize("case", CASES, ids=[f"B{c[0]}K{c[1]}C{c[2]}H{c[3]}tile{c[4]}" for c in CASES])
def test_fused_context_masks_equal_naive(case, transform, kernels):
    B, K, C, H, tiles = case
    z, u, A, a, n, beta = context_heads(B, K, C, C + 3, H, transform)

    def outputs_and_grads(pooled, msum):
        g = torch.Generator().manual_seed(1)
        gp, gs = torch.randn(pooled.shape, generator=g), torch.randn(msum.shape, generator=g)
        return [pooled, msum, *torch.autograd.grad((pooled * gp).sum() + (msum * gs).sum(), (z, u, A, a))]

    expected = outputs_and_grads(*_head_chunk(z.flatten(2), A, a, n, beta, transform, u.flatten(2)))
    actual = outputs_and_grads(*fused_heads(z, A, a, n, beta, transform, tiles=tiles, context=u))
    for what, x, y in zip(("pooled", "mask sum", "grad z", "grad u", "grad A", "grad a"), actual, expected):
        assert x.shape == y.shape, what
        close(x, y, what)
    many = fused_pooled_many(z, A, a, torch.stack([n, torch.ones(K)]), torch.stack([beta, torch.zeros(K)]),
                             tiles=tiles, context=u)
    close(many[0], expected[0], "many, the transformation")
    close(many[1], _head_chunk(z.flatten(2), A, a, n, beta, False, u.flatten(2))[0], "many, identity")


def test_fused_context_backward_passes_gradcheck():
    z, u, A, a, n, beta = (t.detach().double().requires_grad_(t.requires_grad)
                           for t in context_heads(2, 3, 3, 4, 3, True))
    fn = lambda z, u, A, a: fused_heads(z, A, a, n, beta, True, tiles=(2, 3), context=u)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (z, u, A, a))


def test_a_context_that_does_not_fit_is_refused():
    z, u, A, a, n, beta = context_heads(2, 3, 4, 5, 3, False)
    with pytest.raises(ValueError, match=r"context \(2, 5, 2, 2\) does not fit features \(2, 4, 9\)"):
        fused_heads(z, A, a, n, beta, False, context=u[:, :, :2, :2])
    with pytest.raises(ValueError, match="does not fit"):
        fused_heads(z, A[:, :, :4], a, n, beta, False, context=u)


def test_tile_plans_fit_the_budget_and_keep_images_whole():
    for K, C, B, HW, budget in [(40, 128, 32, 4096, 5 << 19), (40, 128, 32, 64, 5 << 19),
                                (3, 8, 4, 256, 1 << 20), (40, 128, 2, 4489, 1 << 20), (7, 16, 3, 49, 100)]:
        for columns in (512, None):
            heads, cols = plan_tiles(K, C, B, HW, budget, columns=columns)
            assert 1 <= heads <= K
            assert HW % cols == 0 or (cols % HW == 0 and cols <= B * HW)
            assert heads * C * cols * 4 <= max(budget, C * 4)
    assert plan_tiles(40, 128, 32, 4096, 5 << 19) == (10, 512)  # the paper's config, 512 KB of L2
    assert plan_tiles(40, 128, 32, 4096, 10 << 20) == (40, 512)  # and with 2 MB of L2


def _cache_folder(root, index, level, kind, size):
    folder = root / f"index{index}"
    folder.mkdir()
    for name, value in (("level", level), ("type", kind), ("size", size)):
        (folder / name).write_text(f"{value}\n")


def test_the_cpu_tile_budget_is_five_times_the_second_level_cache(tmp_path):
    linux = tmp_path / "linux"
    linux.mkdir()
    _cache_folder(linux, 0, 1, "Data", "48K")
    _cache_folder(linux, 1, 1, "Instruction", "64K")
    _cache_folder(linux, 2, 2, "Unified", "2048K")
    _cache_folder(linux, 3, 3, "Unified", "491520K")
    assert cpu_tile_bytes(str(linux)) == 5 * (2 << 20)
    amd = tmp_path / "amd"
    amd.mkdir()
    _cache_folder(amd, 0, 2, "Unified", "512K")
    assert cpu_tile_bytes(str(amd)) == 5 << 19
    assert cpu_tile_bytes(str(tmp_path / "absent")) == CPU_TILE_BYTES_FALLBACK == 5 << 19
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    _cache_folder(damaged, 2, 2, "Unified", "lots")
    assert cpu_tile_bytes(str(damaged)) == CPU_TILE_BYTES_FALLBACK


def model_pair(backbone, chunk_mb=0.0, seed=0):
    torch.manual_seed(seed)
    config = ModelConfig(NAMES, backbone=backbone, widths=(4, 6, 6, 8), head_chunk_mb=chunk_mb)
    fused = HPNet(config)
    naive_model = copy.deepcopy(fused)
    naive_model.config = copy.deepcopy(config)
    naive_model.heads.impl = "naive"
    return fused, naive_model


def loss_and_grads(model, x, y):
    x = x.clone().requires_grad_()
    out = model(x)
    loss = F.binary_cross_entropy_with_logits(out.logits, y) + 0.3 * out.mask_l1  # L1 weighted up
    names = [n for n, _ in model.named_parameters()]
    grads = torch.autograd.grad(loss, [p for _, p in model.named_parameters()] + [x])
    return out, dict(zip(names + ["input"], grads))


@pytest.mark.parametrize("transform", [False, True], ids=["identity", "transformed"])
@pytest.mark.parametrize("backbone,chunk_mb", [("paper", 0.0), ("paper", 0.004), ("strided", 0.0),
                                               ("strided", 0.002)])
def test_model_fused_equals_naive_in_training(backbone, chunk_mb, transform, kernels):
    fused, naive_model = model_pair(backbone, chunk_mb)
    if transform:
        n, beta = torch.tensor([1.0, 2.0, 0.7, 3.0, 1.5]), torch.tensor([0.0, 0.2, 0.5, 0.1, 0.3])
        for m in (fused, naive_model):
            m.set_transform(n, beta)
    x = torch.rand(3, 3, 16, 16)
    y = (torch.rand(3, len(NAMES)) > 0.5).float()
    out_f, grads_f = loss_and_grads(fused.train(), x, y)
    out_n, grads_n = loss_and_grads(naive_model.train(), x, y)
    close(out_f.logits, out_n.logits, "logits")
    close(out_f.mask_l1, out_n.mask_l1, "L1 term")
    assert set(grads_f) == set(grads_n)
    for name in grads_n:
        close(grads_f[name], grads_n[name], name)


def test_fused_is_the_default_and_masks_stay_available():
    model = HPNet(ModelConfig(NAMES, widths=(4, 8), dilations=(1, 2)))
    assert model.config.head_impl == "fused" and model.heads.impl == "fused"
    x = torch.rand(2, 3, 8, 8)
    out = model.eval()(x, return_masks=True)
    assert out.masks.shape == (2, len(NAMES), 8, 8, 8)
    expected = out.masks.sum(dim=(1, 2)).mean()  # position_mean: sum over k, c; mean over the rest
    close(out.mask_l1, expected, "L1 from masks")


def test_channels_last_features_give_the_same_heads(kernels):
    z, A, a, n, beta = random_heads(2, 3, 8, 4, False)
    expected = naive(z, A, a, n, beta, False)
    actual = fused_heads(z.contiguous(memory_format=torch.channels_last), A, a, n, beta, False, tiles=(2, 8))
    for x, y in zip(actual, expected):
        close(x, y, "channels_last")


def test_the_compiled_loops_are_used_where_they_apply():
    if _kernels.library() is None:
        pytest.skip("no C compiler")
    z, A, a, n, beta = random_heads(2, 3, 8, 4, False)
    assert fused_module._problem(z.reshape(2, 8, -1), A, a, n, beta, False, torch.float32, (3, 16, 1)).kernels
    assert fused_module._problem(z.reshape(2, 8, -1), A, a, n, beta, True, torch.float32, (3, 16, 1)).kernels
    assert not fused_module._problem(z.reshape(2, 8, -1).double(), A.double(), a.double(), n, beta, False,
                                     torch.float64, (3, 16, 1)).kernels


def test_inference_needs_no_autograd_state():
    fused, naive_model = model_pair("paper")
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        a, b = fused.eval()(x), naive_model.eval()(x)
    close(a.logits, b.logits, "logits")


def test_autocast_runs_low_precision_products_and_keeps_float32_outputs():
    z, A, a, n, beta = random_heads(2, 3, 8, 4, False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled, msum = fused_heads(z, A, a, n, beta, False, tiles=(2, 8))
    assert pooled.dtype == torch.float32 and msum.dtype == torch.float32
    ref_p, ref_s = naive(z, A, a, n, beta, False)
    assert (pooled - ref_p).abs().max() < 0.05 * ref_p.abs().max()
    gz, gA = torch.autograd.grad(pooled.sum() + 1e-2 * msum.sum(), (z, A))
    assert gz.dtype == z.dtype and gA.dtype == A.dtype
    rz, rA = torch.autograd.grad(ref_p.sum() + 1e-2 * ref_s.sum(), (z, A))
    assert (gz - rz).abs().max() < 0.05 * rz.abs().max()
    assert (gA - rA).abs().max() < 0.05 * rA.abs().max()


def test_bfloat16_features_flow_through():
    z, A, a, n, beta = random_heads(2, 3, 8, 4, False)
    zb = z.detach().bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled, msum = fused_heads(zb, A, a, n, beta, False, tiles=(3, 16))
    (gz,) = torch.autograd.grad(pooled.sum() + msum.sum() * 1e-3, (zb,))
    assert gz.dtype == torch.bfloat16 and torch.isfinite(gz.float()).all()


@pytest.mark.parametrize("transform", [False, True], ids=["identity", "transformed"])
def test_results_are_bit_identical_for_any_thread_count(kernels, transform):
    inputs = random_heads(4, 5, 6, 4, transform)
    fused = {t: heads_and_grads(lambda *args: fused_heads(*args, tiles=(2, 4), threads=t), *inputs, transform)
             for t in (1, 2, 3)}
    for t in (2, 3):
        assert all(torch.equal(a, b) for a, b in zip(fused[1], fused[t])), t


def test_an_empty_batch_gives_empty_outputs():
    z, A, a, n, beta = random_heads(1, 3, 4, 3, False)
    pooled, msum = fused_heads(z[:0], A, a, n, beta, False)
    assert pooled.shape == (0, 3, 4) and msum.shape == (0, 3)


def test_without_a_compiler_the_heads_fall_back_to_torch_ops(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(_kernels.library, "tried", False)
    monkeypatch.setattr(_kernels.library, "lib", None)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("HPNET_KERNEL_CACHE", str(tmp_path / "cache"))
    assert _kernels.library() is None
    assert "unavailable" in capsys.readouterr().err
    z, A, a, n, beta = random_heads(2, 3, 8, 4, False)
    for x, y in zip(fused_heads(z, A, a, n, beta, False), naive(z, A, a, n, beta, False)):
        close(x, y, "fallback")


def test_loading_the_compiled_loops_keeps_subnormal_numbers():
    """The library must not switch the process to flush-to-zero (as -ffast-math builds do)."""
    if _kernels.library() is None:
        pytest.skip("no C compiler")
    tiny = torch.tensor([1e-39])
    assert (tiny * 1.0).item() > 0.0


def test_saturated_masks_with_a_transformation(kernels):
    """Masks at exactly 0, 0.5 and 1 (|d| = 1 or 0 in the tone curve) give the reference values."""
    z, A, a, n, beta = random_heads(2, 3, 8, 4, True)
    with torch.no_grad():
        A.mul_(200.0)       # logits of +-100s: sigmoid 0 or 1 in float32
        A[1].zero_()        # head 1: M = sigmoid(a), then exactly 0.5 where a = 0
        a[1, :4] = 0.0
    expected = naive(z, A, a, n, beta, True)
    for x, y in zip(fused_heads(z, A, a, n, beta, True, tiles=(2, 8)), expected):
        close(x, y, "saturated")


@pytest.mark.parametrize("tiles", [(2, 8), (3, 16), (3, 32)], ids=["part-image", "one-image", "two-images"])
def test_many_transformations_at_once_equal_one_at_a_time(kernels, tiles):
    z, A, a, _, _ = random_heads(3, 3, 8, 4, False)
    g = torch.Generator().manual_seed(5)
    n = torch.cat([torch.ones(1, 3), 0.5 + 3.0 * torch.rand(3, 3, generator=g)])      # (4, K), row 0 identity
    beta = torch.cat([torch.zeros(1, 3), 0.6 * torch.rand(3, 3, generator=g)])
    many = fused_pooled_many(z, A, a, n, beta, tiles=tiles)
    assert many.shape == (4, 3, 3, 8) and not many.requires_grad
    for t in range(4):
        close(many[t], naive(z, A, a, n[t], beta[t], True)[0], f"transformation {t}")


def test_logits_under_equal_the_model_with_each_transformation_set():
    for impl in ("fused", "naive"):
        torch.manual_seed(0)
        model = HPNet(ModelConfig(["a", "b", "c"], widths=(4, 8, 8, 8), head_impl=impl)).eval()
        x = torch.rand(2, 3, 16, 16)
        n, beta = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.7, 4.0]]), torch.tensor([[0.0, 0.0, 0.0], [0.2, 0.0, 0.5]])
        with torch.no_grad():
            under = model.heads.logits_under(model.features(x), n, beta)
            for t in range(2):
                model.set_transform(n[t], beta[t])
                close(under[t], model(x).logits, f"{impl} transformation {t}")
