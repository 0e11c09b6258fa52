"""hpnet compare end to end on a tiny config: the JSON interface, intervals over seeds, reuse of runs."""
import json

import pytest

from clihelp import one_line, run_cli
from fakes import make_fake_celeba, make_fake_csv_dataset
from hpnet.analysis.dissect import DissectSettings
from hpnet.cli import main
from hpnet.commands import dissect_run
from hpnet.commands.compare import CompareSettings, configurations, measure, metric_bounds
from hpnet.core.stats import seed_interval
from hpnet.errors import HPNetError
from hpnet.operations import OPERATIONS
from hpnet.results import CompareResult
from hpnet.run import Run
from hpnet.train import TrainConfig

ARGS = ["--image-size", "16", "--max-images", "64", "--attributes", "Smiling,Eyeglasses,Wearing_Hat",
        "--backbone", "strided", "--widths", "4,6,8", "--epochs", "1", "--batch-size", "16", "--noise", "0,0.2",
        "--localisation-images", "4", "--boot", "30", "--quiet"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "out"
    assert main(["compare", "--out", str(out), "--heads", "channel,linear", "--seeds", "0,1",
                 "--l1-lambdas", "1e-3", *ARGS]) == 0
    return out


def test_the_comparison_writes_the_interface(compared):
    saved = json.loads((compared / "compare.json").read_text())
    assert [c["name"] for c in saved["configs"]] == ["channel", "channel l1=0.001", "linear"]
    for config in saved["configs"]:
        assert config["seeds"] == [0, 1] and len(config["runs"]) == 2
        keys = [f"{op}_score" for op in OPERATIONS.names()] + [
            f"{name}_score_{op.shared_predictor}" for name, op in OPERATIONS.items() if op.shared_predictor]
        for key in ["accuracy", "localisation_masks", "localisation_pooled", "localisation_gradcam",
                    "semantic_minus_random", "roles_share", "consistency", "consistency_chance",
                    "consistency_minus_chance", *keys]:
            metric = config["metrics"][key]
            assert set(metric) >= {"mean", "ci_low", "ci_high", "values"} and len(metric["values"]) == 2
    channel, _, linear = saved["configs"]
    assert linear["metrics"]["tone_score"]["mean"] is None            # no masks, no tone curve
    assert linear["metrics"]["localisation_masks"]["mean"] is None
    for config in (channel, linear):            # every head family has roles and what its classifier pools
        for key in ("localisation_pooled", "roles_share", "consistency", "consistency_chance"):
            assert all(0 <= v <= 1 for v in config["metrics"][key]["values"]), key
    assert channel["metrics"]["tone_score"]["mean"] is not None
    # networks are named as predictability.json and trials.jsonl name them
    assert channel["networks"] == ["channel/seed0 (channel)", "channel/seed1 (channel)"]
    accuracy = channel["metrics"]["accuracy"]
    assert accuracy["ci_low"] <= accuracy["mean"] <= accuracy["ci_high"]
    assert accuracy == json.loads(json.dumps(seed_interval(accuracy["values"], (0.0, 1.0))))
    html = (compared / "report.html").read_text()
    assert "channel l1=0.001" in html and html.count("data:image/png;base64,") == 3
    assert "Channel roles and localisation" in html and "g(M)z pooled" in html and "consistency - chance" in html


def test_consistency_is_that_of_the_dissection_of_the_same_run(compared):
    """compare's roles are those ``hpnet dissect`` names with its defaults on the same images, and its
    consistency is theirs (the evidence |w| x mean mask, or |w| x mean |GAP(z)| for the plain CNN)."""
    saved = json.loads((compared / "compare.json").read_text())
    for config in (saved["configs"][0], saved["configs"][2]):                   # channel, linear
        for seed, path in enumerate(config["runs"]):
            result = dissect_run(path, DissectSettings(n_boot=30), progress=False)
            metrics = {k: config["metrics"][k]["values"][seed] for k in ("roles_share", "consistency",
                                                                          "consistency_chance", "consistency_minus_chance")}
            roles = [c["part"] for c in result.channels]
            assert metrics["roles_share"] == sum(r != "none" for r in roles) / len(roles)
            assert metrics["consistency"] == pytest.approx(result.consistency["score"], abs=1e-9)
            assert metrics["consistency_chance"] == pytest.approx(result.consistency["chance"], abs=1e-12)
            assert metrics["consistency_minus_chance"] == pytest.approx(
                result.consistency["score"] - result.consistency["chance"], abs=1e-9)


def test_each_run_is_a_run_folder_and_its_metrics_are_the_measured_ones(compared):
    saved = CompareResult.from_json(json.loads((compared / "compare.json").read_text()))
    config = saved.configs[0]
    run = Run.open(config["runs"][1])
    assert run.record["train"]["seed"] == 1 and run.record["model"]["head"] == "channel"
    settings = CompareSettings(heads=["channel"], seeds=[1], noise_stds=[0.0, 0.2])
    settings.scoring.localisation_images, settings.scoring.n_boot = 4, 30
    again = measure(run, settings)
    for key, value in again.items():
        assert config["metrics"][key]["values"][1] == pytest.approx(value, abs=1e-9), key
    assert main(["eval", config["runs"][0], "--json"]) == 0


def test_a_second_comparison_reuses_finished_runs(compared, capsys):
    model = compared / "linear" / "seed0" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    assert main(["compare", "--out", str(compared), "--heads", "linear", "--seeds", "0", *ARGS]) == 0
    assert model.stat().st_mtime_ns == stamp
    out = capsys.readouterr().out
    assert "linear" in out and "channel roles (face parts) and semantic consistency:" in out
    assert "g(M)z pooled" in out and "localisation (energy share inside the evidence region):" in out


def test_a_run_trained_with_other_settings_is_refused_not_reused(compared, capsys):
    model = compared / "linear" / "seed0" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    args = [a if a != "1" else "2" for a in ARGS]                       # --epochs 2
    code, _, err = run_cli(capsys, "compare", "--out", compared, "--heads", "linear", "--seeds", "0", *args,
                           "--lr", "0.05")
    line = one_line(code, err, naming=f"{compared / 'linear' / 'seed0'}: holds a run trained with other settings")
    assert "train.epochs=1 (this comparison: 2), train.lr=0.001 (this comparison: 0.05);" in line
    assert model.stat().st_mtime_ns == stamp
    # what does not change what a run learns (threads, mixed precision, the image cache) is not compared
    assert main(["compare", "--out", str(compared), "--heads", "linear", "--seeds", "0", *ARGS,
                 "--workers", "0", "--no-amp"]) == 0
    assert model.stat().st_mtime_ns == stamp


def test_configurations_and_bad_settings():
    names = [c.name for c in configurations(CompareSettings(heads=["attention", "linear"], l1_lambdas=[1e-5, 1e-3],
                                                            train_noises=[0.1]), TrainConfig())]
    assert names == ["attention", "attention l1=0.001", "attention noise=0.1", "linear", "linear noise=0.1"]
    names = [c.name for c in configurations(CompareSettings(heads=["attention", "channel"], l1_lambdas=[1e-3],
                                                            variant_heads=["channel"]), TrainConfig())]
    assert names == ["attention", "channel", "channel l1=0.001"]
    with pytest.raises(HPNetError, match="--heads must be one of"):
        CompareSettings(heads=["fancy"])
    with pytest.raises(HPNetError, match="--seeds lists a seed twice"):
        CompareSettings(seeds=[1, 1])


@pytest.mark.parametrize("dataset", ["csv", "celeba"])
def test_roles_need_face_parts_and_localisation_evidence_regions(tmp_path, dataset, capsys):
    """A CSV of images without landmarks has no face parts: no roles, no consistency, and no
    localisation (no evidence regions), without an error; aligned CelebA has its parts from the face
    layout, so its roles and consistency are measured, but no localisation."""
    root = make_fake_csv_dataset(tmp_path / "csv") if dataset == "csv" else make_fake_celeba(tmp_path / "celeba")
    out = tmp_path / "out"
    assert main(["compare", "--out", str(out), "--dataset", dataset, "--root", str(root), "--attributes",
                 "Smiling,Male,Young", "--heads", "channel", "--seeds", "0", "--image-size", "16", "--backbone",
                 "strided", "--widths", "4,6,8", "--epochs", "1", "--batch-size", "8", "--noise", "0",
                 "--boot", "20", "--quiet"]) == 0
    metrics = json.loads((out / "compare.json").read_text())["configs"][0]["metrics"]
    assert metrics["localisation_pooled"]["values"] == [None] and metrics["localisation_masks"]["values"] == [None]
    printed = capsys.readouterr().out
    assert "localisation" not in printed
    if dataset == "csv":
        for key in ("roles_share", "consistency", "consistency_chance", "consistency_minus_chance"):
            assert metrics[key]["values"] == [None] and metrics[key]["mean"] is None
        assert "channel roles" not in printed
    else:
        assert 0 <= metrics["roles_share"]["mean"] <= 1 and 0 <= metrics["consistency_chance"]["mean"] <= 1
        assert "channel roles" in printed


def test_seed_interval_is_clipped_to_the_metric_range():
    shares = [0.97, 1.0, 1.0]                    # a share near 1 over 3 seeds: Student-t reaches past 1
    assert seed_interval(shares)["ci_high"] > 1.0
    clipped = seed_interval(shares, (0.0, 1.0))
    assert clipped["ci_high"] == 1.0 and clipped["ci_low"] == seed_interval(shares)["ci_low"]
    assert clipped["mean"] == seed_interval(shares)["mean"]
    assert metric_bounds("prune_score") == metric_bounds("prune_score_contribution") == (-1.0, 1.0)
    assert metric_bounds("consistency_minus_chance") == metric_bounds("semantic_minus_random") == (-1.0, 1.0)
    assert metric_bounds("roles_share") == metric_bounds("accuracy") == metric_bounds("noise_0.1") == (0.0, 1.0)
