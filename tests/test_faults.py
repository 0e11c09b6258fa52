"""Faults and hostile input (issue 19's cases, as they are fixed): each case failed before its fix."""

import json

import pytest

from clihelp import one_line, run_cli
from hpnet.checks import SEED_MAX
from hpnet.errors import HPNetError
from hpnet.predictability import PredictabilitySettings

TINY = ["--dataset", "synthetic", "--image-size", "16", "--max-images", "64", "--attributes", "Smiling,Male",
        "--backbone", "strided", "--widths", "4,8", "--epochs", "1", "--quiet"]


@pytest.mark.parametrize("seed", [2 ** 63, 2 ** 64, SEED_MAX + 1])
def test_a_seed_beyond_the_generators_range_is_one_line_and_writes_nothing(tmp_path, capsys, seed):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--out", str(out), "--seed", str(seed), *TINY)
    one_line(code, err, r"--seed must be at most 2\^32-1")
    assert not out.exists()                              # no run.json left at "running"
    code, _, err = run_cli(capsys, "compare", "--out", str(tmp_path / "cmp"), "--heads", "linear",
                           "--seeds", f"0,{seed}", *TINY)
    one_line(code, err, r"--seeds must be at most 2\^32-1")
    assert not (tmp_path / "cmp").exists()


def test_the_largest_seed_is_accepted():
    assert PredictabilitySettings(seed=SEED_MAX).seed == SEED_MAX
    with pytest.raises(HPNetError, match="seed must be at most"):
        PredictabilitySettings(seed=SEED_MAX + 1)


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """A tiny run with a checkpoint to resume (trained 1 epoch; resuming to 2 continues it)."""
    from hpnet.cli import main
    out = tmp_path_factory.mktemp("resume") / "run"
    assert main(["train", "--out", str(out), "--no-eval", *TINY]) == 0
    return out


def test_resume_refuses_changed_settings_naming_each(killed_run, capsys):
    before = (killed_run / "run.json").read_text()
    code, _, err = run_cli(capsys, "train", "--resume", "--out", str(killed_run), "--head", "channel",
                           "--l1-lambda", "0.5", "--train-noise", "0.5", "--dataset", "csv", "--root",
                           "/nonexistent.csv", "--epochs", "2", "--quiet", "--no-eval")
    line = one_line(code, err, naming=f"{killed_run}: --resume continues the run with its recorded settings")
    for difference in ("data.dataset=synthetic (asked: csv)", "model.head=attention (asked: channel)",
                       "train.l1_lambda=", "(asked: 0.5)", "train.train_noise=0"):
        assert difference in line
    assert "data.root" not in line                                # where the data lie is not what is learnt
    assert (killed_run / "run.json").read_text() == before     # nothing trained, nothing rewritten


def test_resume_with_the_recorded_settings_and_more_epochs_goes_on(killed_run, capsys):
    code, out, err = run_cli(capsys, "train", "--resume", "--out", str(killed_run), "--widths", "4,8",
                             "--backbone", "strided", "--epochs", "2", "--quiet", "--no-eval")
    assert code == 0, err
    assert json.loads((killed_run / "run.json").read_text())["epochs_done"] == 2


@pytest.mark.parametrize("values, message", [
    ("2e-4,0.0002", r"--l1-lambdas: 0.0002 is listed twice"),
    ("1e-4,1.0000001e-4", r"--l1-lambdas: 0.00010000001 and 0.0001 would share the name 0.0001")])
def test_compare_refuses_duplicate_or_colliding_variant_values(tmp_path, capsys, values, message):
    code, _, err = run_cli(capsys, "compare", "--out", str(tmp_path / "cmp"), "--heads", "channel",
                           "--l1-lambdas", values, *TINY)
    one_line(code, err, message)
    assert not (tmp_path / "cmp").exists()


def test_a_failed_run_without_a_model_is_named_as_failed(killed_run, tmp_path, capsys):
    failed = tmp_path / "failed"
    failed.mkdir()
    record = json.loads((killed_run / "run.json").read_text())
    record.update(status="failed", failure="the loss is not finite at epoch 1")
    (failed / "run.json").write_text(json.dumps(record))
    code, _, err = run_cli(capsys, "serve", str(failed), "--port", "0")
    one_line(code, err, r"the run failed \(the loss is not finite at epoch 1\); train it again")


@pytest.mark.parametrize("made_by", ["prune --save", "export"])
def test_training_over_a_finished_run_folder_is_refused_and_leaves_it(killed_run, tmp_path, capsys, made_by):
    from hpnet.cli import main
    target = tmp_path / "saved"
    if made_by == "prune --save":
        assert main(["prune", str(killed_run), "--keep", "4", "--save", str(target), "--quiet",
                     "--grid", "0,4"]) == 0
    else:
        from hpnet.run import Run
        Run.open(killed_run).derive(Run.open(killed_run).model(), target, perturbed_from=str(killed_run))
    before = sorted(p.name for p in target.iterdir())
    weights = (target / "model.safetensors").read_bytes()
    code, _, err = run_cli(capsys, "train", "--out", str(target), *TINY)
    one_line(code, err, naming=f"{target}: holds a finished run")
    assert sorted(p.name for p in target.iterdir()) == before and (target / "model.safetensors").read_bytes() == weights
