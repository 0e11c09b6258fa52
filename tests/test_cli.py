"""The `hpnet` command end to end on fake CelebA folders and CSVs, and every bad input: one line, exit 2."""
import json
from pathlib import Path

import pytest

from clihelp import hpnet_process, one_line, run_cli
from fakes import make_fake_celeba, make_fake_csv_dataset

TINY = ["--image-size", "16", "--widths", "4,8,8,8", "--epochs", "1", "--batch-size", "8", "--quiet"]


@pytest.mark.parametrize("layout", ["txt", "csv"])
def test_fake_celeba_trains_one_epoch_and_evaluates(tmp_path, capsys, layout):
    root = make_fake_celeba(tmp_path / "data", layout=layout)
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--dataset", "celeba", "--root", root, "--out", run,
                             "--attributes", "Smiling,Male,Young", "--cache-dir", tmp_path / "cache", *TINY)
    assert code == 0, err
    assert "test split, 4 images" in out and "Smiling" in out
    code, out, err = run_cli(capsys, "eval", run, "--json")
    result = json.loads(out)
    assert code == 0 and result["split"] == "test" and result["images"] == 4
    assert [r["name"] for r in result["per_attribute"]] == ["Smiling", "Male", "Young"]
    assert set(result) >= {"mean_accuracy", "mean_majority_baseline", "per_attribute"}
    assert set(result["per_attribute"][0]) == {"name", "accuracy", "majority_baseline", "positives"}
    code, out, _ = run_cli(capsys, "eval", run, "--split", "valid,test", "--json")
    assert code == 0 and json.loads(out)["images"] == 8


def test_csv_dataset_trains_and_evaluates(tmp_path, capsys):
    csv = make_fake_csv_dataset(tmp_path / "data")
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--dataset", "csv", "--root", csv, "--out", run,
                             "--cache-dir", "none", *TINY)
    assert code == 0, err
    code, out, _ = run_cli(capsys, "eval", run, "--json")
    assert code == 0 and json.loads(out)["per_attribute"][0]["name"] == "Smiling"


def test_prune_command_prints_both_curves_and_honours_its_options(tmp_path, capsys):
    csv = make_fake_csv_dataset(tmp_path / "data")
    run = tmp_path / "run"
    assert run_cli(capsys, "train", "--dataset", "csv", "--root", csv, "--out", run, "--cache-dir", "none",
                   *TINY)[0] == 0
    code, out, err = run_cli(capsys, "prune", run, "--grid", "0,4,8", "--seeds", "2", "--fit-images", "6",
                             "--quiet")
    assert code == 0, err
    assert "(classifiers reconstructed)" in out and "(classifiers unchanged)" in out and "semantic_features" in out
    stored = json.loads((run / "pruning.json").read_text())
    assert stored["fit_images"] == 6 and stored["correlation"] == "contributions"
    code, out, err = run_cli(capsys, "prune", run, "--grid", "0,8", "--method", "semantic",
                             "--correlation", "features", "--no-reconstruct", "--quiet")
    assert code == 0, err
    assert "(classifiers reconstructed)" not in out and "semantic_contributions" in out
    stored = json.loads((run / "pruning.json").read_text())
    assert not stored["reconstructed"] and stored["correlation"] == "features"


def test_empty_valid_and_test_splits_train_on_a_holdout_and_refuse_to_evaluate_test(tmp_path, capsys):
    root = make_fake_celeba(tmp_path / "data", partitions=(24, 0, 0))
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--dataset", "celeba", "--root", root, "--out", run,
                             "--attributes", "Smiling,Male", "--valid-fraction", "0.25",
                             "--cache-dir", tmp_path / "cache", *TINY)
    assert code == 0, err
    record = json.loads((run / "run.json").read_text())
    assert record["train_images"] == 18 and record["valid_images"] == 6
    assert "valid split, 6 images" in out  # eval falls back to the held-out part
    code, _, err = run_cli(capsys, "eval", run, "--split", "test")
    one_line(code, err, r"split 'test' of the celeba data at .* is empty")


def test_missing_root_folder(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--dataset", "celeba", "--root", tmp_path / "nope",
                           "--out", tmp_path / "run", *TINY)
    one_line(code, err, r"CelebA root folder not found: .*nope")


def test_missing_label_file(tmp_path, capsys):
    root = make_fake_celeba(tmp_path / "data")
    (root / "list_eval_partition.txt").unlink()
    code, _, err = run_cli(capsys, "train", "--dataset", "celeba", "--root", root, "--out", tmp_path / "r", *TINY)
    one_line(code, err, r"missing partition file .*list_eval_partition\.txt")


def test_image_that_does_not_decode(tmp_path, capsys):
    root = make_fake_celeba(tmp_path / "data")
    (root / "img_align_celeba" / "000003.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code, _, err = run_cli(capsys, "train", "--dataset", "celeba", "--root", root, "--out", tmp_path / "r",
                           "--cache-dir", tmp_path / "cache", *TINY)
    one_line(code, err, r"cannot decode image .*000003\.jpg")


def _edit_attr_row(root: Path, row: int, edit) -> None:
    path = root / "list_attr_celeba.txt"
    lines = path.read_bytes().decode().split("\r\n")
    lines[row + 1] = edit(lines[row + 1])
    path.write_bytes("\r\n".join(lines).encode())


def test_attribute_row_with_the_wrong_number_of_values(tmp_path, capsys):
    root = make_fake_celeba(tmp_path / "data")
    _edit_attr_row(root, 5, lambda line: line.rsplit(" ", 1)[0])
    code, _, err = run_cli(capsys, "train", "--dataset", "celeba", "--root", root, "--out", tmp_path / "r", *TINY)
    one_line(code, err, r"list_attr_celeba\.txt: line 7: expected an image name and 40 values, got 39")


def test_attribute_value_other_than_minus_one_zero_one(tmp_path, capsys):
    root = make_fake_celeba(tmp_path / "data")
    _edit_attr_row(root, 2, lambda line: line[:-2] + " 2")
    code, _, err = run_cli(capsys, "train", "--dataset", "celeba", "--root", root, "--out", tmp_path / "r", *TINY)
    one_line(code, err, r"list_attr_celeba\.txt: line 4: column Young: label '2' is not -1, 0 or 1")


def test_csv_path_leaving_the_data_root(tmp_path, capsys):
    csv = make_fake_csv_dataset(tmp_path / "data")
    lines = csv.read_text().splitlines()
    first = lines[1].split(",")
    first[0] = "../../etc/passwd"
    lines[1] = ",".join(first)
    csv.write_text("\n".join(lines) + "\n")
    code, _, err = run_cli(capsys, "train", "--dataset", "csv", "--root", csv, "--out", tmp_path / "r", *TINY)
    one_line(code, err, r"labels\.csv: line 2: image path '\.\./\.\./etc/passwd' resolves outside the data root")


def test_unknown_attribute_name(tmp_path, capsys):
    root = make_fake_celeba(tmp_path / "data")
    code, _, err = run_cli(capsys, "train", "--dataset", "celeba", "--root", root, "--out", tmp_path / "r",
                           "--attributes", "Smiling,Smiley", *TINY)
    one_line(code, err, r"unknown attribute\(s\) Smiley")
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "s", "--attributes", "Smiling,Winking", *TINY)
    one_line(code, err, r"Winking")


def test_checkpoint_from_another_config(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--out", run, "--max-images", "32", "--attributes", "Smiling,Male",
                           "--no-eval", *TINY)
    assert code == 0, err
    config = json.loads((run / "model.json").read_text())
    config["widths"] = [4, 8, 8, 16]
    (run / "model.json").write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "eval", run)
    one_line(code, err, r"model\.safetensors: checkpoint does not match the model config")


def test_missing_run_folder(tmp_path, capsys):
    code, _, err = run_cli(capsys, "eval", tmp_path / "nope")
    one_line(code, err, r"nope: run folder not found")


def test_bad_input_exits_non_zero_without_traceback_in_a_real_process(tmp_path):
    proc = hpnet_process("train", "--dataset", "celeba", "--root", tmp_path / "missing", "--out", tmp_path / "r")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.strip().splitlines() == [f"hpnet train: error: CelebA root folder not found: {tmp_path / 'missing'}"]
