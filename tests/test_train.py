"""Training: the loss, determinism, checkpoints, exact resume after a real SIGKILL, evaluation."""
import json
import signal
import time

import pytest
import torch

from clihelp import hpnet_process
from hpnet.data import DataSpec
from hpnet.commands import evaluate_run, train_run
from hpnet.errors import HPNetError
from hpnet.io import load_tensors
from hpnet.evaluation import accuracy_table
from hpnet.train import TrainConfig, learning_rate, loss_fn

ATTRS = ["Smiling", "Male", "Eyeglasses"]
TINY = {"widths": (4, 8, 8, 8)}


def spec(images: int = 96) -> DataSpec:
    return DataSpec(dataset="synthetic", image_size=16, max_images=images, attributes=ATTRS)


def test_loss_is_sum_over_attributes_of_batch_mean_bce_plus_lambda_l1():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    loss, bce = loss_fn(logits, targets, torch.tensor(3.0), l1_lambda=0.5)
    by_hand = -(torch.log(torch.sigmoid(torch.tensor([0.0, 1.0, -1.0]))).sum()
                + torch.log(1 - torch.sigmoid(torch.tensor(2.0)))) / 2
    torch.testing.assert_close(bce, by_hand)
    torch.testing.assert_close(loss, by_hand + 1.5)


def test_learning_rate_schedule_is_cosine_from_lr_to_one_percent():
    cfg = TrainConfig(lr=1e-3)
    assert learning_rate(cfg, 0, 100) == pytest.approx(1e-3)
    assert learning_rate(cfg, 50, 100) == pytest.approx(0.5 * (1e-3 + 1e-5))
    assert learning_rate(cfg, 100, 100) == pytest.approx(1e-5)


def test_accuracy_table_and_majority_baseline_from_training_labels():
    logits = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    table = accuracy_table(logits, targets, ["a", "b"], train_positive_rate=[0.7, 0.2])
    a, b = table["per_attribute"]
    assert a == {"name": "a", "accuracy": 0.75, "majority_baseline": 0.5, "positives": 2}
    assert b == {"name": "b", "accuracy": 0.5, "majority_baseline": 0.75, "positives": 1}
    assert table["mean_accuracy"] == pytest.approx(0.625)


def test_training_is_deterministic_and_writes_a_loadable_run(tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=32)
    for name in ("a", "b"):
        train_run(tmp_path / name, spec(), TINY, cfg, progress=False)
    wa = load_tensors(tmp_path / "a" / "model.safetensors")
    wb = load_tensors(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    record = json.loads((tmp_path / "a" / "run.json").read_text())
    assert record["status"] == "done" and record["epochs_done"] == 2
    assert [h["epoch"] for h in record["history"]] == [1, 2]
    assert 0 < record["masks"]["mean"] < 1
    assert not list(tmp_path.glob("a/*.tmp"))


def test_training_learns_on_synthetic_faces(tmp_path):
    record = train_run(tmp_path / "r", DataSpec(dataset="synthetic", image_size=32, max_images=1024,
                                                attributes=["Male", "Wearing_Lipstick", "No_Beard"]),
                       {"backbone": "strided", "widths": (8, 16, 16, 16)},
                       TrainConfig(epochs=4, batch_size=32, lr=3e-3), progress=False)
    result = evaluate_run(tmp_path / "r", progress=False)
    assert result.mean_accuracy > result.mean_majority_baseline + 0.05, result
    assert record["history"][-1]["loss"] < record["history"][0]["loss"]


def test_an_existing_run_is_not_overwritten(tmp_path):
    train_run(tmp_path / "r", spec(32), TINY, TrainConfig(epochs=1), progress=False)
    with pytest.raises(HPNetError, match="already holds a run; use --resume"):
        train_run(tmp_path / "r", spec(32), TINY, TrainConfig(epochs=1), progress=False)


def test_resume_after_sigkill_gives_the_uninterrupted_weights(tmp_path):
    args = ["train", "--dataset", "synthetic", "--image-size", "16", "--max-images", "384",
            "--attributes", ",".join(ATTRS), "--widths", "4,8,8,8", "--epochs", "4",
            "--batch-size", "16", "--quiet", "--no-eval"]
    full = hpnet_process(*args, "--out", str(tmp_path / "full"))
    assert full.wait(timeout=300) == 0, full.stderr.read()

    killed = tmp_path / "killed"
    proc = hpnet_process(*args, "--out", str(killed))
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        run = killed / "run.json"
        if run.is_file() and json.loads(run.read_text() or "{}").get("epochs_done", 0) >= 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    done_at_kill = json.loads((killed / "run.json").read_text())["epochs_done"]
    assert 1 <= done_at_kill < 4 and not (killed / "model.safetensors").exists()

    resumed = hpnet_process("train", "--resume", "--out", str(killed), "--quiet", "--no-eval")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    a = load_tensors(tmp_path / "full" / "model.safetensors")
    b = load_tensors(killed / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"


def test_noise_augmentation_is_off_by_default_seeded_and_changes_training(tmp_path):
    noisy = TrainConfig(epochs=1, batch_size=32, train_noise=0.3, train_noise_p=0.5)
    for name, cfg in (("a", noisy), ("b", noisy), ("plain", TrainConfig(epochs=1, batch_size=32))):
        train_run(tmp_path / name, spec(64), TINY, cfg, progress=False)
    a, b, plain = (load_tensors(tmp_path / n / "model.safetensors") for n in ("a", "b", "plain"))
    assert all(torch.equal(a[k], b[k]) for k in a)                      # the noise is drawn from the seed
    assert not all(torch.equal(a[k], plain[k]) for k in a)
    assert TrainConfig().train_noise == 0.0
    with pytest.raises(HPNetError, match="--train-noise-p must be a finite number in \\[0, 1\\]"):
        TrainConfig(train_noise=0.1, train_noise_p=1.5)
