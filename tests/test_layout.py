"""The structure's promises: what `import hpnet` loads, registries the CLI lists, one-entry extensions."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clihelp import run_cli
from hpnet.cli import build_parser
from hpnet.data import SOURCES
from hpnet.model import BACKBONES, HEADS, HPNet, ModelConfig, count_macs
from hpnet.model.backbones import Backbone, ConvSpec
from hpnet.operations import OPERATIONS
from hpnet.ops.pruning import SCORERS, PruneSettings, ScanInputs, method_orders, prune_physical

NAMES = ["Smiling", "Male", "Eyeglasses"]


def test_import_hpnet_loads_no_trainer_commands_or_plotting():
    code = ("import sys, hpnet; bad = [m for m in sys.modules if m.split('.')[:2] in (['hpnet', 'train'], "
            "['hpnet', 'commands'], ['hpnet', 'report']) or m == 'matplotlib']; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def help_text(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return " ".join(sub.choices[command].format_help().split())


def test_the_cli_lists_every_registered_choice():
    train, prune = help_text("train"), help_text("prune")
    for registry, text in ((BACKBONES, train), (HEADS, train), (SOURCES, train), (SCORERS, prune)):
        assert registry.names() and all(name in text for name in registry.names())
    assert f"default all: {','.join(SCORERS.names())}" in prune


def test_a_new_pruning_scorer_is_one_entry(monkeypatch):
    def reversed_l1(inputs):
        return {"reversed_l1": inputs.filter_l1.argsort(descending=True).tolist()}

    monkeypatch.setitem(SCORERS._entries, "reversed_l1", reversed_l1)
    torch.manual_seed(0)
    model = HPNet(ModelConfig(NAMES, backbone="strided", widths=(4, 8)))
    settings = PruneSettings(methods=["reversed_l1"])
    orders, _ = method_orders(ScanInputs(model, settings.scan), settings.methods)
    assert sorted(orders["reversed_l1"]) == list(range(8))
    assert "reversed_l1" in help_text("prune")


def test_a_new_backbone_is_one_entry(monkeypatch, tmp_path, capsys):
    def two_strided(config):
        return [ConvSpec(3, config.widths[0], 2), ConvSpec(config.widths[0], config.widths[-1], 2)]

    monkeypatch.setitem(BACKBONES._entries, "two_strided", Backbone(two_strided, "two stride-2 convs"))
    torch.manual_seed(0)
    model = HPNet(ModelConfig(NAMES, backbone="two_strided", widths=(4, 8))).eval()
    x = torch.rand(2, 3, 16, 16)
    assert model.features(x).shape == (2, 8, 4, 4)
    assert count_macs(model, 16) == 3 * 4 * 9 * 64 + 4 * 8 * 9 * 16 + 3 * 8 * 8 * 16 + 2 * 3 * 8 * 16 + 3 * 8
    small = prune_physical(model, [0, 3, 5])
    assert small.config.backbone == "two_strided" and small.features(x).shape[1] == 3
    code, _, err = run_cli(capsys, "train", "--backbone", "two_strided", "--widths", "4,8", "--image-size", "16",
                           "--max-images", "32", "--attributes", ",".join(NAMES), "--epochs", "1", "--quiet",
                           "--no-eval", "--out", tmp_path / "r")
    assert code == 0, err
    assert "two_strided" in help_text("train")


@pytest.mark.parametrize("registry, what", [(BACKBONES, "--backbone"), (HEADS, "--head"), (SOURCES, "--dataset"),
                                            (SCORERS, "--method")])
def test_unknown_names_are_one_line_errors_listing_the_choices(registry, what):
    from hpnet.errors import HPNetError
    with pytest.raises(HPNetError, match=f"{what} must be one of {', '.join(registry.names())}, got 'nope'"):
        registry.get("nope")


def test_no_module_over_400_lines_and_no_function_over_60():
    """The size rule: a module is its physical lines, a function end_lineno - lineno + 1 (nested ones
    count inside their parent too)."""
    repo = Path(__file__).resolve().parents[1]
    violations = []
    for path in sorted((repo / "src" / "hpnet").rglob("*.py")):
        source = path.read_text()
        name = path.relative_to(repo).as_posix()
        lines = len(source.splitlines())
        if lines > 400:
            violations.append(f"MODULE {name} {lines}")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    violations.append(f"FUNC {name} {node.name} {length}")
    assert violations == [], "over the size limits:\n" + "\n".join(violations)


def test_a_new_operation_is_one_entry_in_the_score_the_report_and_compare():
    """An operation registered from outside hpnet (tests/extra_operation.py's "flip") is scored,
    drawn in the report and given compare's columns with no edit to hpnet."""
    from extra_operation import flip_registered

    from hpnet.data import DataSpec, load_split
    from hpnet.predictability import PredictabilitySettings, score_networks
    from hpnet.report.compare import score_columns
    from hpnet.report.predictability import _scores_table, fig_operation
    from hpnet.results import CompareResult

    torch.manual_seed(0)
    nets = {"a (channel)": HPNet(ModelConfig(NAMES, backbone="strided", widths=(4, 8), head="channel")).eval(),
            "a/plain (linear)": HPNet(ModelConfig(NAMES, backbone="strided", widths=(4, 8), head="linear")).eval()}
    data = load_split(DataSpec(dataset="synthetic", image_size=16, max_images=48, attributes=NAMES), "train", False)
    settings = PredictabilitySettings(max_images=16, usage_images=16, localisation_images=0, groups=2, singles=4,
                                      n_boot=20)
    with flip_registered() as flip:
        result = score_networks(nets, data, data, settings)
        assert set(result.operations["flip"]) == set(nets)
        assert result.operations["flip"]["a (channel)"]["operations"][0]["operation"] == "flip"
        assert fig_operation(result, "flip") is not None and flip.title in _scores_table(result)
        compared = CompareResult(configs=[{"name": "x", "metrics": {"accuracy": {}, "flip_score": {}}}])
        assert ("flip_score", "predictability: flip channels", False) in score_columns(compared)
    assert "flip" not in OPERATIONS
