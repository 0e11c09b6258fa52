"""The residual backbones (torchvision's names and weights, physical pruning through the residual
connection) and a user's own backbone (``HPNet.from_backbone``) through every command."""
from __future__ import annotations

import datetime
import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from clihelp import one_line, run_cli
from hpnet.analysis.attention import AnalysisSettings
from hpnet.commands import analyse_run, predictability_run, prune_run, report_run, robust_run
from hpnet.data import DataSpec, load_split
from hpnet.errors import HPNetError
from hpnet.hitl import Workbench
from hpnet.model import HPNet, ModelConfig, count_macs
from hpnet.model.weights import load_backbone_weights
from hpnet.ops.pruning import (CurveSettings, PruneSettings, ScanInputs, ScanSettings, masked_model, method_orders,
                               prunable, prune_physical)
from hpnet.ops.robust import RobustSettings
from hpnet.predictability import PredictabilitySettings
from hpnet.run import Run
from hpnet.train import TrainConfig, fit
from tinybackbone import TinyNet, Undeclared

NAMES = ["Smiling", "Male", "Eyeglasses"]
TINY = (4, 4, 8, 8)
BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}


# ---------------------------------------------------------------------------- torchvision's ResNet, by hand


def torchvision_state(blocks=(2, 2, 2, 2), widths=TINY, stem=7, seed=0) -> dict[str, torch.Tensor]:
    """A state dict with torchvision's ResNet names and shapes (fc included), written from its
    definition: conv1 (stem x stem), bn1, layerS.B.{conv1, bn1, conv2, bn2}, and downsample.0/.1 on
    the first block of a stage that changes the stride or width."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def conv(name, c_out, c_in, k):
        state[f"{name}.weight"] = torch.randn(c_out, c_in, k, k, generator=g) * (2 / (c_in * k * k)) ** 0.5

    def bn(name, c):
        state.update({f"{name}.weight": 1 + 0.1 * torch.randn(c, generator=g),
                      f"{name}.bias": 0.1 * torch.randn(c, generator=g),
                      f"{name}.running_mean": 0.1 * torch.randn(c, generator=g),
                      f"{name}.running_var": 0.5 + torch.rand(c, generator=g),
                      f"{name}.num_batches_tracked": torch.tensor(7)})

    conv("conv1", widths[0], 3, stem)
    bn("bn1", widths[0])
    c_in = widths[0]
    for s, (n, w) in enumerate(zip(blocks, widths), 1):
        for b in range(n):
            p = f"layer{s}.{b}"
            conv(f"{p}.conv1", w, c_in if b == 0 else w, 3)
            bn(f"{p}.bn1", w)
            conv(f"{p}.conv2", w, w, 3)
            bn(f"{p}.bn2", w)
            if b == 0 and (s > 1 or c_in != w):
                conv(f"{p}.downsample.0", w, c_in, 1)
                bn(f"{p}.downsample.1", w)
        c_in = w
    state["fc.weight"] = torch.randn(10, widths[-1], generator=g)
    state["fc.bias"] = torch.randn(10, generator=g)
    return state


def reference_features(state: dict, x: torch.Tensor, blocks=(2, 2, 2, 2)) -> torch.Tensor:
    """torchvision's ResNet forward (eval mode) up to layer4, written with torch.nn.functional."""
    def bn(t, name):
        return F.batch_norm(t, state[f"{name}.running_mean"], state[f"{name}.running_var"],
                            state[f"{name}.weight"], state[f"{name}.bias"], False, 0.0, 1e-5)

    x = F.max_pool2d(F.relu(bn(F.conv2d(x, state["conv1.weight"], stride=2, padding=3), "bn1")), 3, 2, 1)
    for s, n in enumerate(blocks, 1):
        for b in range(n):
            p, stride = f"layer{s}.{b}", 2 if s > 1 and b == 0 else 1
            out = F.relu(bn(F.conv2d(x, state[f"{p}.conv1.weight"], stride=stride, padding=1), f"{p}.bn1"))
            out = bn(F.conv2d(out, state[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            identity = x
            if f"{p}.downsample.0.weight" in state:
                identity = bn(F.conv2d(x, state[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
            x = F.relu(out + identity)
    return x


def resnet(seed: int = 0, **kw) -> HPNet:
    """A tiny ResNet (widths 4, 4, 8, 8) with non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = HPNet(ModelConfig(NAMES, **{"backbone": "resnet18", "widths": TINY, **kw}))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("backbone", ["resnet18", "resnet34"])
def test_the_parameter_names_and_shapes_are_torchvisions(backbone):
    model = HPNet(ModelConfig(NAMES, backbone=backbone))
    assert model.config.widths == (64, 128, 256, 512) and model.config.channels == 512
    ours = {k: tuple(v.shape) for k, v in model.extractor.state_dict().items() if not k.endswith("identity_index")}
    theirs = {k: tuple(v.shape) for k, v in torchvision_state(BLOCKS[backbone], (64, 128, 256, 512)).items()
              if not k.startswith("fc.")}
    assert ours == theirs
    assert list(ours) == list(theirs)                                  # torchvision's order, too
    assert model.features(torch.rand(1, 3, 64, 64)).shape == (1, 512, 2, 2)


@pytest.mark.parametrize("kind", ["safetensors", "pth", "nested"])
def test_a_torchvision_state_dict_loads_and_gives_torchvisions_features(kind, tmp_path):
    state = torchvision_state()
    path = tmp_path / f"weights.{kind}"
    if kind == "safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state, "epoch": 3} if kind == "nested" else state, path)
    model = resnet(seed=1)
    load_backbone_weights(model, path)
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(model.extractor.state_dict()[key], value), key
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.features(x), reference_features(state, x), atol=1e-5)


def refusal(tmp_path, state, **kw) -> str:
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    with pytest.raises(HPNetError) as e:
        load_backbone_weights(resnet(**kw), path)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_a_wrong_key_shape_or_missing_key_is_one_line_naming_it(tmp_path):
    state = torchvision_state()
    assert "unexpected key 'layer5.0.conv1.weight'" in refusal(tmp_path, {**state, "layer5.0.conv1.weight": torch.zeros(1)})
    message = refusal(tmp_path, state, stem="small")     # a 7x7 conv1 into the small stem's 3x3 one
    assert "'conv1.weight' has shape (4, 3, 7, 7)" in message and "needs (4, 3, 3, 3)" in message
    wide = torchvision_state(widths=(4, 4, 8, 16))
    assert "'layer4.0.conv1.weight' has shape (16, 8, 3, 3)" in refusal(tmp_path, wide)
    del state["layer2.0.downsample.1.running_var"]
    assert "'layer2.0.downsample.1.running_var' of the resnet18 backbone is missing" in refusal(tmp_path, state)
    old = {k: v for k, v in torchvision_state().items() if not k.endswith("num_batches_tracked")}
    load_backbone_weights(resnet(), _saved(tmp_path, old))       # files older than num_batches_tracked load


def _saved(tmp_path, state):
    path = tmp_path / "ok.safetensors"
    save_file(state, str(path))
    return path


CALLED: list[int] = []


def _mark() -> int:
    CALLED.append(1)
    return 0


class Payload:
    """An object whose unpickling would call ``_mark``: weights_only must refuse it."""

    def __reduce__(self):
        return (_mark, ())


def test_a_file_holding_code_or_no_tensors_is_refused_without_running_it(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 7, 7), "x": Payload()}, path)
    with pytest.raises(HPNetError, match="weights_only=True") as e:
        load_backbone_weights(resnet(), path)
    assert not CALLED and "\n" not in str(e.value)
    torch.save({"conv1.weight": torch.zeros(4, 3, 7, 7), "when": datetime.date(2020, 1, 1)}, path)
    with pytest.raises(HPNetError, match="weights_only"):
        load_backbone_weights(resnet(), path)
    torch.save([torch.zeros(1)], path)
    with pytest.raises(HPNetError, match="not a state dict"):
        load_backbone_weights(resnet(), path)
    with pytest.raises(HPNetError, match="file not found"):
        load_backbone_weights(resnet(), tmp_path / "nothing.pth")


def test_cli_trains_a_resnet_on_celeba_from_backbone_weights(capsys, tmp_path, fake_celeba):
    weights = _saved(tmp_path, torchvision_state())
    out = tmp_path / "run"
    args = ["train", "--dataset", "celeba", "--root", fake_celeba.parent, "--backbone", "resnet18",
            "--widths", "4,4,8,8", "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--lr", "1e-12",
            "--cache-dir", tmp_path / "cache", "--workers", "0", "--quiet", "--out", out]
    code, _, err = run_cli(capsys, *args, "--backbone-weights", weights)
    assert code == 0, err
    run = Run.open(out)
    assert run.train_settings["backbone_weights"] == str(weights) and run.model_config.backbone == "resnet18"
    conv = run.model().extractor.state_dict()["layer3.0.conv1.weight"]
    assert torch.allclose(conv, torchvision_state()["layer3.0.conv1.weight"], atol=1e-6)   # lr ~ 0: as loaded
    pruned = prune_run(out, PruneSettings(curves=CurveSettings(grid=[0, 4]), keep=4), progress=False)
    assert pruned.physical["channels_after"] == 4 and pruned.physical["max_abs_logit_diff_vs_masked"] < 1e-5
    bad = _saved(tmp_path, torchvision_state(stem=5))
    shutil.rmtree(tmp_path / "cache")
    code, _, err = run_cli(capsys, *args[:-1], tmp_path / "other", "--backbone-weights", bad)
    one_line(code, err, naming="'conv1.weight' has shape (4, 3, 5, 5)")
    assert not (tmp_path / "cache").exists()                        # refused before the images were read
    code, _, err = run_cli(capsys, *args[:-1], tmp_path / "x", "--backbone", "resnet34", "--widths", "4,8")
    one_line(code, err, naming="--backbone resnet34 has 4 stages")
    assert not (tmp_path / "cache").exists()


def test_the_resnets_mac_count_is_the_sum_of_its_convs():
    model = resnet()
    size, macs = 32, 0
    side = size // 2
    macs += 4 * 3 * 49 * side * side                              # conv1 7x7 stride 2, then the max pool
    side //= 2
    c_in = 4
    for s, w in enumerate(TINY):
        for b in range(2):
            stride = 2 if s > 0 and b == 0 else 1
            side = (side - 1) // stride + 1
            macs += (c_in if b == 0 else w) * w * 9 * side * side + w * w * 9 * side * side
            if b == 0 and (stride != 1 or c_in != w):
                macs += c_in * w * side * side
        c_in = w
    assert count_macs(model, size) == macs + model.heads.macs(side * side)


# ---------------------------------------------------------------------------- pruning through the residual


@pytest.mark.parametrize("kw", [dict(), dict(backbone="resnet34", stem="small"), dict(head="context"),
                                dict(head="linear"), dict(head="channel")])
def test_physical_pruning_of_a_resnet_equals_switching_channels_off(kw, tmp_path):
    model = resnet(**kw)
    kept = [0, 2, 3, 6]
    x = torch.rand(3, 3, 32, 32)
    small = prune_physical(model, kept)
    with torch.no_grad():
        assert torch.allclose(small(x).logits, masked_model(model, kept)(x).logits, atol=1e-6, rtol=0)
    last = small.extractor.layer4[-1]
    assert last.conv2.out_channels == 4 and last.bn2.num_features == 4 and last.identity_index.tolist() == kept
    assert last.conv1.in_channels == 8 and small.extractor.layer4[0].conv2.out_channels == 8   # the stream stays
    assert small.config.channels == 4 and small.config.pruned_to == 4 and small.config.widths == model.config.widths
    smaller = prune_physical(small, [1, 3])                          # twice: the residual index composes
    assert smaller.extractor.layer4[-1].identity_index.tolist() == [2, 6]
    small.save(tmp_path)
    again = HPNet.load(tmp_path)
    with torch.no_grad():
        assert torch.allclose(smaller(x).logits, masked_model(model, [2, 6])(x).logits, atol=1e-6, rtol=0)
        assert torch.equal(again(x).logits, small(x).logits)


def test_a_pruned_resnets_features_are_the_kept_channels_of_the_whole():
    model = resnet()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(prune_physical(model, [1, 5, 7]).features(x), model.features(x)[:, [1, 5, 7]], atol=1e-6)


# ---------------------------------------------------------------------------- your own backbone


SPEC = DataSpec(dataset="synthetic", image_size=16, max_images=128, attributes=NAMES)
QUICK = TrainConfig(epochs=1, batch_size=32, amp=False, device="cpu", num_workers=0)


def train_own(module, out, **kw) -> HPNet:
    torch.manual_seed(0)
    model = HPNet.from_backbone(module, 8, NAMES, **kw)
    fit(model, load_split(SPEC, "train", False), load_split(SPEC, "valid", False), QUICK, out, data_spec=SPEC,
        progress=False)
    return model


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("own") / "run"
    train_own(TinyNet(width=8), out, kwargs={"width": 8})
    return out


def test_from_backbone_records_the_module_and_reopens(own_run):
    record = json.loads((own_run / "run.json").read_text())["model"]
    assert record["backbone"] == "module" and record["module"] == "tinybackbone:TinyNet"
    assert record["module_kwargs"] == {"width": 8} and record["widths"] == [8]
    model = Run.open(own_run).model()
    assert isinstance(model.extractor.module, TinyNet)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x).logits, HPNet.load(own_run)(x).logits)


def test_own_backbone_goes_through_every_command_and_the_page(own_run, tmp_path):
    pruned = prune_run(own_run, PruneSettings(scan=ScanSettings(seeds=1), curves=CurveSettings(grid=[0, 4]),
                                              keep=5, save=tmp_path / "small"), progress=False)
    assert {"semantic", "random", "l1", "attention"} <= set(pruned.methods)
    assert pruned.physical["max_abs_logit_diff_vs_masked"] < 1e-5 and pruned.physical["params_after"] < \
        pruned.physical["params_before"]
    small = Run.open(tmp_path / "small").model()
    assert small.config.channels == 5 and small.extractor.module.last_conv.out_channels == 5
    robust = robust_run(own_run, RobustSettings(ns=(1, 2), betas=(0,), noise_stds=(0,), max_images=32), progress=False)
    assert len(robust.results) == 2
    analyse_run(own_run, AnalysisSettings(max_images=32), progress=False)
    result = predictability_run(own_run, PredictabilitySettings(max_images=32, localisation_images=4, usage_images=32,
                                                                groups=2, n_boot=20, batch_size=32), progress=False)
    assert list(result.networks) == ["run (attention)", "run/plain (linear)"]
    plain = Run.open(own_run / "plain")
    assert plain.model_config.module == "tinybackbone:TinyNet" and plain.model_config.head == "linear"
    assert "module tinybackbone:TinyNet(" in report_run(own_run).read_text()
    bench = Workbench.from_run(own_run, images=16)
    assert list(bench.networks) == ["run (attention)", "run/plain (linear)"]
    path, channels = bench.export(bench.perturbation({"network": "run (attention)", "off": [0, 7]}), tmp_path / "off")
    assert channels == 6 and Run.open(path).model().extractor.module.last_conv.out_channels == 6


def test_a_module_declaring_no_last_conv_is_pruned_masked(tmp_path):
    model = train_own(Undeclared(8), tmp_path / "run", kwargs={"width": 8})
    assert not prunable(model)
    with pytest.raises(HPNetError, match="declares no last_conv") as e:
        prune_physical(model, [0, 1])
    assert "\n" not in str(e.value)
    orders, skipped = method_orders(ScanInputs(model, ScanSettings(), load_split(SPEC, "train", False)),
                                    ["semantic", "l1"])
    assert "l1" in skipped and sorted(orders["semantic"]) == list(range(8))
    result = prune_run(tmp_path / "run", PruneSettings(curves=CurveSettings(grid=[0, 4])), progress=False)
    assert "l1" not in result.methods and "semantic" in result.methods
    with pytest.raises(HPNetError, match="declares no last_conv"):
        prune_run(tmp_path / "run", PruneSettings(curves=CurveSettings(grid=[0, 4]), keep=4), progress=False)
    bench = Workbench.from_run(tmp_path / "run", images=16)
    path, channels = bench.export(bench.perturbation({"network": list(bench.networks)[0], "off": [0, 7]}), tmp_path / "off")
    exported = Run.open(path).model()
    assert channels == 8 and exported.channel_keep.tolist() == [0, 1, 1, 1, 1, 1, 1, 0]   # kept masked


def test_a_run_whose_module_cannot_be_imported_is_one_line(own_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(own_run, copy, ignore=shutil.ignore_patterns("plain", "hitl"))
    for name, module in (("nowhere.at_all:Net", "cannot be imported"), ("subprocess:run", "not an nn.Module class")):
        for file in ("run.json", "model.json"):
            record = json.loads((copy / file).read_text())
            (record["model"] if file == "run.json" else record)["module"] = name
            (copy / file).write_text(json.dumps(record))
        with pytest.raises(HPNetError, match=module) as e:
            Run.open(copy).model()
        assert name in str(e.value) and "\n" not in str(e.value)


def test_from_backbone_refuses_what_does_not_fit():
    with pytest.raises(HPNetError, match="last_conv has 8 output channels, but it was said to give 6"):
        HPNet.from_backbone(TinyNet(8), 6, NAMES)
    with pytest.raises(HPNetError, match=r"gave \(1, 8, 8, 8\); it must give \(B, 6, H, W\)"):
        HPNet.from_backbone(Undeclared(8), 6, NAMES)(torch.rand(1, 3, 16, 16))
    with pytest.raises(HPNetError, match="--head context"):
        HPNet.from_backbone(TinyNet(8), 8, NAMES, head="context")
    with pytest.raises(HPNetError, match="JSON"):
        HPNet.from_backbone(TinyNet(8), 8, NAMES, kwargs={"width": object()})
    with pytest.raises(HPNetError, match="nn.Module"):
        HPNet.from_backbone(lambda x: x, 8, NAMES)


def test_resnet_configs_are_checked_and_round_trip_through_json():
    config = ModelConfig(NAMES, backbone="resnet34", widths=TINY, stem="small")
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    for kw, message in ((dict(widths=(4, 8)), "has 4 stages"), (dict(stem="big"), "--stem must be one of"),
                        (dict(pruned_to=9), "at most the last width 8"),
                        (dict(backbone="paper", widths=(4, 8), pruned_to=2), "needs a ResNet or module")):
        with pytest.raises(HPNetError, match=message):
            ModelConfig(NAMES, **{"backbone": "resnet18", "widths": TINY, **kw})
    with pytest.raises(HPNetError, match="package.module:Class"):
        ModelConfig(NAMES, backbone="module", widths=(8,))
