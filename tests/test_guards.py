"""Nothing silently wrong: divergence, meaningless settings, inconsistent runs and clobbered outputs
all stop with one line and exit 2, before any file is written or changed."""
import hashlib
import json
import shutil

import pytest
import torch

import hpnet.train as train_module
from clihelp import one_line, run_cli, tree
from hpnet.cli import main
from hpnet.io import load_tensors

ATTRS = "Smiling,Male,Eyeglasses"
TINY = ["--dataset", "synthetic", "--image-size", "16", "--max-images", "64", "--attributes", ATTRS,
        "--backbone", "strided", "--widths", "4,8", "--batch-size", "16", "--quiet", "--no-eval"]


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("guards") / "run"
    assert main(["train", *TINY, "--epochs", "2", "--out", str(run)]) == 0
    return run


# ---------------------------------------------------------------------------- training guards


def test_a_non_finite_loss_fails_the_run_and_keeps_its_last_checkpoint(tmp_path, capsys, monkeypatch):
    saved = {}
    save = train_module.save_checkpoint

    def recording_save(path, model, optimizer, state):
        save(path, model, optimizer, state)
        saved[state["epochs_done"]] = digest(path)

    loss_fn = train_module.loss_fn
    calls = []

    def poisoned(logits, targets, mask_l1, l1_lambda):  # the loss of the 6th step (epoch 2) is NaN
        loss, bce = loss_fn(logits, targets, mask_l1, l1_lambda)
        calls.append(1)
        return (loss * float("nan"), bce) if len(calls) == 6 else (loss, bce)

    monkeypatch.setattr(train_module, "save_checkpoint", recording_save)
    monkeypatch.setattr(train_module, "loss_fn", poisoned)
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", *TINY, "--epochs", "2", "--out", run)
    one_line(code, err, r"training diverged at epoch 2, step 6: the loss is nan; the run is marked failed, "
                        r"its last checkpoint \(epoch 1\) is kept")
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed" and record["epochs_done"] == 1 and record["step"] == 4
    assert "diverged" in record["failure"] and not (run / "model.safetensors").exists()
    assert digest(run / "checkpoint.safetensors") == saved[1]              # the last good one, untouched

    monkeypatch.setattr(train_module, "loss_fn", loss_fn)
    code, out, err = run_cli(capsys, "train", "--resume", "--out", run, "--quiet", "--no-eval")
    assert code == 0, err
    assert json.loads((run / "run.json").read_text())["status"] == "done"
    reference = tmp_path / "reference"
    assert main(["train", *TINY, "--epochs", "2", "--out", str(reference)]) == 0
    a, b = load_tensors(run / "model.safetensors"), load_tensors(reference / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)                         # as if it had never failed


def test_a_non_finite_gradient_stops_training(tmp_path, capsys, monkeypatch):
    fit = train_module.fit

    def fit_with_bad_gradient(model, *args, **kw):
        model.heads.bias.register_hook(lambda g: g * float("inf"))
        return fit(model, *args, **kw)

    monkeypatch.setattr("hpnet.commands.train.fit", fit_with_bad_gradient)
    code, out, err = run_cli(capsys, "train", *TINY, "--epochs", "1", "--out", tmp_path / "run")
    one_line(code, err, r"diverged at epoch 1, step 1: the gradient norm is (inf|nan); .*no epoch had finished")


def test_a_huge_learning_rate_is_caught_by_the_loss_ratio(tmp_path, capsys):
    code, out, err = run_cli(capsys, "train", *TINY, "--epochs", "3", "--lr", "1e6", "--out", tmp_path / "run")
    one_line(code, err, r"training diverged at epoch \d+, step \d+: the loss .* is over 100 times the run's first")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"


def test_eval_refuses_a_model_whose_weights_are_not_finite(trained, tmp_path, capsys):
    from safetensors.torch import save_file
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    weights = load_tensors(run / "model.safetensors")
    weights["heads.weight"][0, 0] = float("nan")
    save_file(weights, str(run / "model.safetensors"))
    before = tree(run)
    code, out, err = run_cli(capsys, "eval", run)
    one_line(code, err, r"the model's weights are not finite \(heads\.weight\); the training diverged")
    assert tree(run) == before


# ---------------------------------------------------------------------------- consistent runs


def test_run_json_and_model_json_must_agree(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    record = json.loads((run / "run.json").read_text())
    record["model"]["l1_norm"] = "sum"
    (run / "run.json").write_text(json.dumps(record))
    code, out, err = run_cli(capsys, "eval", run)
    one_line(code, err, r"run\.json and model\.json disagree on l1_norm \('sum' and 'position_mean'\)")


def test_a_model_older_than_the_checkpoint_is_not_used(trained, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    # a resume that extends the run to 4 epochs, killed during epoch 3 (after run.json was rewritten)
    epoch = train_module._Loop.epoch

    def killed_in_epoch_3(self, data, order, record, number, progress):
        if number == 2:
            raise KeyboardInterrupt
        return epoch(self, data, order, record, number, progress)

    monkeypatch.setattr(train_module._Loop, "epoch", killed_in_epoch_3)
    code, out, err = run_cli(capsys, "train", "--resume", "--epochs", "4", "--out", run, "--quiet", "--no-eval")
    assert code == 130
    record = json.loads((run / "run.json").read_text())
    assert record["train"]["epochs"] == 4 and record["status"] == "running"       # the extension holds
    code, out, err = run_cli(capsys, "eval", run)
    one_line(code, err, r"the run has not finished \(status running, 2 of 4 epochs\), so its model\.safetensors "
                        r"is older than its checkpoint; finish it with `hpnet train --resume --out")
    monkeypatch.setattr(train_module._Loop, "epoch", epoch)
    code, out, err = run_cli(capsys, "train", "--resume", "--out", run, "--quiet", "--no-eval")   # no --epochs
    assert code == 0, err
    record = json.loads((run / "run.json").read_text())
    assert record["epochs_done"] == 4 and record["status"] == "done"
    assert run_cli(capsys, "eval", run)[0] == 0


@pytest.mark.parametrize("damage, pattern", [
    (lambda run: (run / "run.json").write_text('{"model": 3}'), r"run\.json: \"model\" is not a JSON object"),
    (lambda run: (run / "run.json").write_text("[]"), r"run\.json: not a run record"),
    (lambda run: (run / "model.json").write_text('{"widths": [4, 8]}'),
     r"model\.json: missing attribute_names"),
    (lambda run: (run / "model.json").write_text(
        json.dumps({**json.loads((run / "model.json").read_text()), "backbone": "resnet"})),
     r"model\.json: --backbone must be one of paper, strided, resnet18, resnet34, module, got 'resnet'"),
    (lambda run: (run / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}"),
     r"model\.safetensors: (not a readable safetensors file|checkpoint does not match)"),
])
def test_damaged_run_files_are_one_line_naming_the_file(trained, tmp_path, capsys, damage, pattern):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    damage(run)
    before = tree(run)
    code, out, err = run_cli(capsys, "eval", run)
    one_line(code, err, pattern)
    assert tree(run) == before


def test_a_damaged_checkpoint_cannot_be_resumed(trained, tmp_path, capsys):
    from safetensors.torch import save_file
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    tensors = load_tensors(run / "checkpoint.safetensors")
    save_file(tensors, str(run / "checkpoint.safetensors"), metadata={"state": "{}"})  # no param_groups
    code, out, err = run_cli(capsys, "train", "--resume", "--out", run, "--quiet")
    one_line(code, err, r"checkpoint\.safetensors: not a training checkpoint of this run")


def test_a_malformed_result_file_is_one_line_in_the_report(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "pruning.json").write_text(json.dumps({"methods": {"semantic": "steep"}, "channels": 8}))
    code, out, err = run_cli(capsys, "report", run)
    one_line(code, err, r"pruning\.json: cannot be shown in the report, its contents are malformed")
    (run / "pruning.json").write_text(json.dumps({"methods": 4}))
    code, out, err = run_cli(capsys, "report", run)
    one_line(code, err, r"pruning\.json: not a pruning result: methods is '4'")
    assert not (run / "report.html").exists()


# ---------------------------------------------------------------------------- settings


BAD_SETTINGS = [
    (["train", "--epochs", "0"], r"--epochs must be an integer >= 1, got 0"),
    (["train", "--epochs", "-1"], r"--epochs must be an integer >= 1, got -1"),
    (["train", "--image-size", "0"], r"--image-size must be an integer >= 8, got 0"),
    (["train", "--max-images", "0"], r"--max-images must be an integer >= 1"),
    (["train", "--lr", "inf"], r"--lr must be a finite number > 0, got inf"),
    (["train", "--lr", "1e-3", "--l1-lambda", "nan"], r"--l1-lambda must be a finite number >= 0, got nan"),
    (["train", "--weight-decay", "-1"], r"--weight-decay must be a finite number >= 0"),
    (["train", "--batch-size", "0"], r"--batch-size must be an integer >= 1"),
    (["train", "--seed", "-1"], r"--seed must be an integer >= 0"),
    (["train", "--device", "gpu"], r"--device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    (["train", "--valid-fraction", "1"], r"--valid-fraction must be in \[0, 1\)"),
    (["train", "--attributes", "Smiling,Smiling"], r"--attributes lists Smiling more than once"),
    (["train", "--widths", "4,0"], r"argument --widths: expected positive integers"),
    (["train", "--max-loss-ratio", "-2"], r"--max-loss-ratio must be a finite number >= 0"),
    (["analyse", "RUN", "--max-images", "0"], r"--max-images must be an integer >= 1, got 0"),
    (["analyse", "RUN", "--samples", "0"], r"--samples must be an integer >= 1, got 0"),
    (["prune", "RUN", "--max-images", "0"], r"--max-images must be an integer >= 1"),
    (["prune", "RUN", "--max-images", "-1"], r"--max-images must be an integer >= 1"),
    (["prune", "RUN", "--method", ""], r"--method: give at least one of semantic, random, l1, attention"),
    (["prune", "RUN", "--method", "magic"], r"--method must be one of semantic, random, l1, attention, got 'magic'"),
    (["prune", "RUN", "--fit-images", "-5"], r"--fit-images must be an integer >= 1"),
    (["prune", "RUN", "--seeds", "0"], r"--seeds must be an integer >= 1"),
    (["prune", "RUN", "--keep", "0"], r"--keep must be an integer >= 1"),
    (["prune", "RUN", "--keep", "99"], r"--keep must be in 1\.\.8, got 99"),
    (["prune", "RUN", "--grid", "0,99"], r"pruning grid must hold channel counts in 0\.\.8"),
    (["robust", "RUN", "--n", "nan"], r"--n must be a finite number > 0, got nan"),
    (["robust", "RUN", "--n", "0"], r"--n must be a finite number > 0, got 0"),
    (["robust", "RUN", "--n", ""], r"--n must not be empty"),
    (["robust", "RUN", "--beta", "1.5"], r"--beta must be a finite number in \[0, 1\], got 1\.5"),
    (["robust", "RUN", "--beta", "-0.1"], r"--beta must be a finite number in \[0, 1\]"),
    (["robust", "RUN", "--noise", "nan"], r"--noise must be a finite number >= 0, got nan"),
    (["robust", "RUN", "--max-images", "0"], r"--max-images must be an integer >= 1"),
    (["robust", "RUN", "--split", "nope"], r"--split must be one or more of train, valid, test"),
    (["predictability", "RUN", "--boot", "0"], r"--boot must be an integer >= 1"),
    (["predictability", "RUN", "--max-images", "0"], r"--max-images must be an integer >= 1"),
    (["predictability", "RUN", "--localisation-images", "-1"], r"--localisation-images must be an integer >= 0"),
    (["predictability", "RUN", "--epochs", "0"], r"--epochs must be an integer >= 1"),
    (["eval", "RUN", "--split", "valid,nope"], r"--split must be one or more of train, valid, test"),
    (["demo", "--epochs", "0"], r"--epochs must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize("args, pattern", BAD_SETTINGS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_meaningless_settings_are_one_line_before_any_work(trained, tmp_path, capsys, args, pattern):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = tree(tmp_path)
    args = [str(run) if a == "RUN" else a for a in args]
    if args[0] == "train":
        args += ["--out", str(tmp_path / "new"), "--quiet"]
    if args[0] == "demo":
        args += ["--out", str(tmp_path / "demo"), "--quiet"]
    code, out, err = run_cli(capsys, *args)
    one_line(code, err, pattern)
    assert tree(tmp_path) == before                                        # nothing written or changed


# ---------------------------------------------------------------------------- outputs


def test_outputs_of_the_wrong_kind_are_refused_before_any_work(trained, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    code, out, err = run_cli(capsys, "train", *TINY, "--epochs", "1", "--out", a_file)
    one_line(code, err, r"--out .*a_file: exists and is a file, not a folder")
    code, out, err = run_cli(capsys, "train", *TINY, "--epochs", "1", "--out", a_file / "run")
    one_line(code, err, r"--out .*a_file/run: .*a_file is a file, not a folder")
    code, out, err = run_cli(capsys, "prune", trained, "--keep", "4", "--save", a_file, "--quiet")
    one_line(code, err, r"--save .*a_file: exists and is a file, not a folder")
    code, out, err = run_cli(capsys, "report", trained, "--out", tmp_path)
    one_line(code, err, r"--out .*: exists and is a folder, not a file")
    code, out, err = run_cli(capsys, "demo", "--out", tmp_path, "--quiet")      # the demo deletes only runs
    one_line(code, err, r"--out .*: exists and holds no run; the demo replaces only a run folder")
    assert a_file.read_text() == "keep me" and not (trained / "pruning.json").exists()


# ---------------------------------------------------------------------------- edges


def test_a_single_image_batch_at_a_one_pixel_feature_map(tmp_path, capsys):
    tiny = ["--dataset", "synthetic", "--image-size", "8", "--max-images", "33", "--attributes", ATTRS,
            "--backbone", "strided", "--widths", "4,8,8,8", "--quiet", "--no-eval", "--epochs", "1"]
    code, out, err = run_cli(capsys, "train", *tiny, "--batch-size", "16", "--out", tmp_path / "a")
    assert code == 0, err                                          # 33 = 2 x 16 + 1: the last image is skipped
    assert json.loads((tmp_path / "a" / "run.json").read_text())["history"][0]["batches"] == 3
    code, out, err = run_cli(capsys, "train", *tiny, "--batch-size", "1", "--out", tmp_path / "b")
    one_line(code, err, r"--batch-size 1: the features are 1 x 1 at this image size, and BatchNorm needs "
                        r"at least 2 images a batch")


def test_the_empty_training_split_message_does_not_suggest_split(tmp_path, capsys):
    from fakes import make_fake_celeba
    root = make_fake_celeba(tmp_path / "data", partitions=(0, 12, 12))
    code, out, err = run_cli(capsys, "train", "--dataset", "celeba", "--root", root, "--out", tmp_path / "r",
                             "--cache-dir", "none", "--image-size", "16", "--widths", "4,8", "--backbone",
                             "strided", "--quiet")
    line = one_line(code, err, r"split 'train' of the celeba data at .* is empty; training needs images in it")
    assert "--split" not in line


def test_no_progress_bars_off_a_terminal_but_a_line_per_epoch(tmp_path, capsys):
    args = [a for a in TINY if a != "--quiet"]
    code, out, err = run_cli(capsys, "train", *args, "--epochs", "2", "--out", tmp_path / "r")
    assert code == 0, err
    assert "\r" not in err and "\r" not in out and "it/s" not in err
    assert [line.split()[1] for line in out.splitlines() if line.startswith("epoch ")] == ["1/2", "2/2"]
