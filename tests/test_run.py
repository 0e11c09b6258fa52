"""The Run object and the result types: one check and one message each, round trips, atomic writes."""
import json
import math

import pytest
import torch

from hpnet.errors import HPNetError
from hpnet.io import atomic_write_json
from hpnet.model import HPNet, ModelConfig
from hpnet.results import (RESULTS, AnalysisResult, DissectResult, EvaluationResult, PredictabilityResult,
                           PruningResult, RobustnessResult)
from hpnet.run import Run

NAMES = ["Smiling", "Male", "Eyeglasses"]


def make_run(path, head="attention", data=True):
    """A run folder with run.json and the final model files (no training)."""
    torch.manual_seed(0)
    model = HPNet(ModelConfig(NAMES, backbone="strided", widths=(4, 8), head=head))
    model.save(path)
    spec = {"dataset": "synthetic", "image_size": 16, "max_images": 64, "attributes": NAMES}
    atomic_write_json({"model": model.config.to_dict(), "train": {}, "history": [],
                       "data": spec if data else None, "train_positive_rate": [0.6, 0.2, 0.5]},
                      path / "run.json")
    return model


def examples():
    """One instance of every result type, with every optional field set."""
    return [
        EvaluationResult(mean_accuracy=0.7, mean_majority_baseline=0.6, images=8, split="valid,test",
                         per_attribute=[{"name": "Smiling", "accuracy": 0.7, "majority_baseline": 0.6,
                                         "positives": 3}], dataset="synthetic", backbone="paper", run="r"),
        AnalysisResult(attribute_names=NAMES, channels=2, mean_mask_grid=[[0.1, 0.2]] * 3,
                       channel_correlation=[[1.0, 0.5], [0.5, 1.0]], cluster_order=[1, 0], attribute_table=[],
                       top_channels={n: [0] for n in NAMES}, fig4_attributes=NAMES[:1], figures={"fig5": "figures/x"}),
        PruningResult(methods={"semantic": [[0, 0.7], [2, 0.5]]}, channels=2, reconstructed=True, fit_images=5,
                      methods_heads_unchanged={"semantic": [[0, 0.7], [2, 0.4]]}, skipped={"attention": "why"},
                      physical={"kept_channels": [1]}, majority_baseline=0.6),
        RobustnessResult(results=[{"n": 1.0, "beta": 0.0, "noise_std": 0.0, "accuracy": 0.7}],
                         selection={"noise_std": 0.1}),
        PredictabilityResult(operations={"prune": {"demo (attention)": {"score": 0.5}}},
                             networks={"demo (attention)": {"head": "attention"}}, accuracy={"demo (attention)": {}}),
        DissectResult(parts=["background", "mouth"], channels=[{"channel": 0, "part": "mouth", "iou": 0.2,
                                                                "iou_ci_low": 0.1, "iou_ci_high": 0.3}],
                      consistency={"score": 0.5, "chance": 0.25}, fig4={"skipped": "no Smiling"}, iou=[[0.0, 0.2]],
                      images=4, split="valid", figures={"roles": "figures/x.png"}),
    ]


def test_every_result_type_has_an_example():
    assert {type(r) for r in examples()} == set(RESULTS)


@pytest.mark.parametrize("result", examples(), ids=lambda r: type(r).__name__)
def test_results_round_trip_through_the_run_folder(tmp_path, result):
    make_run(tmp_path)
    run = Run.open(tmp_path)
    path = run.write(result)
    assert path.name == result.file_name and path.parent == tmp_path
    assert json.loads(path.read_text()) == result.to_json()
    key = {"split": result.split} if isinstance(result, EvaluationResult) else {}
    assert run.read(type(result), **key) == result
    assert not list(tmp_path.glob(".*.tmp"))


def test_file_names_and_optional_fields():
    assert EvaluationResult.file_for("valid,test") == "eval_valid+test.json"
    assert [r.file_name for r in examples()[1:]] == ["analysis.json", "pruning.json", "robustness.json",
                                                     "predictability.json", "dissect.json"]
    plain = PruningResult(methods={}, channels=4)
    assert {"fit_images", "methods_heads_unchanged", "skipped", "physical"}.isdisjoint(plain.to_json())
    assert "majority_baseline" in plain.to_json() and plain.to_json()["majority_baseline"] is None
    assert "selection" not in RobustnessResult(results=[]).to_json()


def test_nan_is_written_as_null():
    result = PredictabilityResult(operations={"prune": {"plain": {"score": math.nan, "ci": [1.0, math.inf]}}},
                                  networks={}, accuracy={})
    assert result.to_json()["operations"] == {"prune": {"plain": {"score": None, "ci": [1.0, None]}}}


def test_a_result_file_without_a_required_key_is_one_line_naming_it(tmp_path):
    make_run(tmp_path)
    (tmp_path / "pruning.json").write_text(json.dumps({"channels": 4}))
    with pytest.raises(HPNetError, match=r"pruning\.json: not a pruning result: missing methods"):
        Run.open(tmp_path).read(PruningResult)
    (tmp_path / "robustness.json").write_text("[1, 2]")
    with pytest.raises(HPNetError, match=r"robustness\.json: not a robustness result \(expected a JSON object\)"):
        Run.open(tmp_path).read(RobustnessResult)
    assert Run.open(tmp_path).read(AnalysisResult) is None


def test_opening_runs_names_the_folder_or_file(tmp_path):
    with pytest.raises(HPNetError, match=r"nope: run folder not found"):
        Run.open(tmp_path / "nope")
    with pytest.raises(HPNetError, match=r"run\.json: file not found"):
        Run.open(tmp_path)
    (tmp_path / "run.json").write_text("[]")
    with pytest.raises(HPNetError, match=r"run\.json: not a run record"):
        Run.open(tmp_path)
    (tmp_path / "run.json").write_text("{")
    with pytest.raises(HPNetError, match=r"run\.json: not valid JSON"):
        Run.open(tmp_path)


def test_data_spec_is_one_check_with_one_message(tmp_path):
    make_run(tmp_path, data=False)
    with pytest.raises(HPNetError, match=r"run\.json: the run records no data settings"):
        Run.open(tmp_path).data_spec
    make_run(tmp_path)
    assert Run.open(tmp_path).data_spec.image_size == 16


def test_the_model_is_checked_against_the_head_a_command_expects(tmp_path):
    model = make_run(tmp_path / "a")
    make_run(tmp_path / "p", head="linear")
    loaded = Run.open(tmp_path / "a").model(needs_masks=True)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, model.eval()(x).logits) and not loaded.training
    with pytest.raises(HPNetError, match="linear heads"):
        Run.open(tmp_path / "p").model(needs_masks=True)
    with pytest.raises(HPNetError, match="must be a plain CNN"):
        Run.open(tmp_path / "a").model(needs_masks=False)


def test_evaluation_split_and_majority_baseline(tmp_path):
    make_run(tmp_path)
    run = Run.open(tmp_path)
    split, data = run.eval_data()
    assert split == "test" and run.eval_split("valid") == "valid" and len(data) == 64
    majority = torch.tensor([1.0, 0.0, 1.0])                    # from train_positive_rate 0.6, 0.2, 0.5
    expected = float((data.targets[:10] == majority).float().mean())
    assert run.majority_baseline(data, max_images=10) == pytest.approx(expected)
