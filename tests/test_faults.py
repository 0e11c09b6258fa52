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


# ---------------------------------------------------------------------------- folders two writers share

def test_two_trainings_into_one_folder_the_second_is_refused_naming_the_first(tmp_path):
    import time

    from clihelp import error_lines, hpnet_process
    out = tmp_path / "run"
    slow = [*TINY[:-1], "--max-images", "512", "--epochs", "5000", "--no-eval"]  # still training when the second starts
    first = hpnet_process("train", "--out", out, *slow)
    try:
        deadline = time.monotonic() + 60
        while not (out / "run.json").is_file():                                 # the first writes: it holds the folder
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        second = hpnet_process("train", "--out", out, *TINY)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2 and len(error_lines(err)) == 1, err
        assert f"{out}: is being written by hpnet train (process {first.pid} on " in err
        assert first.poll() is None                                                # the first trains on
    finally:
        first.kill()                                                               # a killed holder ...
        first.wait(timeout=30)
    assert json.loads((out / "run.json").read_text())["model"]["head"] == "attention"
    from hpnet.folders import claimed
    with claimed(out):                                                             # ... leaves it free to claim
        pass


def test_a_claimed_folder_refuses_train_compare_and_cleans_up_what_it_made(tmp_path, capsys):
    from hpnet.folders import LOCK_FILE, claimed
    out = tmp_path / "held"
    with claimed(out):
        assert (out / LOCK_FILE).read_text().startswith("hpnet ")
        code, _, err = run_cli(capsys, "train", "--out", out, *TINY)
        one_line(code, err, naming=f"{out}: is being written by hpnet")
        code, _, err = run_cli(capsys, "compare", "--out", out, "--heads", "linear", "--seeds", "0", *TINY)
        one_line(code, err, naming=f"{out}: is being written by hpnet")
    assert not out.exists()                                  # the claim made the folder and it stayed empty
    nested = tmp_path / "a" / "b" / "run"
    code, _, err = run_cli(capsys, "train", "--out", nested, *TINY[:1], "csv", "--root", tmp_path / "none.csv",
                           *TINY[2:])
    one_line(code, err, naming="none.csv")
    assert not (tmp_path / "a").exists()                    # a refused training leaves no folder behind


def test_overwrite_clears_a_finished_run_and_only_a_folder_hpnet_wrote(killed_run, tmp_path, capsys):
    from hpnet.cli import main
    target = tmp_path / "saved"
    assert main(["prune", str(killed_run), "--keep", "4", "--save", str(target), "--quiet", "--grid", "0,4"]) == 0
    (target / "pruning.json").write_text("{}")              # results of the old model beside it
    assert main(["train", "--out", str(target), "--overwrite", "--no-eval", *TINY]) == 0
    record = json.loads((target / "run.json").read_text())
    assert "pruned_from" not in record and record["status"] == "done" and not (target / "pruning.json").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a person's file")
    code, _, err = run_cli(capsys, "train", "--out", mine, "--overwrite", *TINY)
    one_line(code, err, naming=f"--out {mine}: holds files but no run.json or compare.json")
    assert (mine / "notes.txt").read_text() == "a person's file"
    code, _, err = run_cli(capsys, "train", "--out", target, "--overwrite", "--resume", *TINY)
    one_line(code, err, r"--overwrite clears the folder that --resume would continue")


def test_a_pruned_save_is_whole_and_never_lands_on_files(killed_run, tmp_path, capsys):
    from hpnet.cli import main
    target = tmp_path / "saved"
    target.mkdir()
    (target / "x.txt").write_text("in the way")
    code, _, err = run_cli(capsys, "prune", killed_run, "--keep", "4", "--save", target, "--quiet", "--grid", "0,4")
    one_line(code, err, naming=f"--save {target}: holds files already")
    (target / "x.txt").unlink()                              # an empty folder is taken
    assert main(["prune", str(killed_run), "--keep", "4", "--save", str(target), "--quiet", "--grid", "0,4"]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"saved"}                  # no staging folder left beside it
    assert main(["prune", str(killed_run), "--keep", "3", "--save", str(target), "--quiet", "--grid", "0,4",
                 "--overwrite"]) == 0
    assert json.loads((target / "run.json").read_text())["kept_channels"].__len__() == 3


def test_staged_and_claimed_folders(tmp_path):
    import threading

    from hpnet.folders import FolderTaken, LOCK_FILE, claimed, staged
    out = tmp_path / "export"
    with pytest.raises(FolderTaken, match="taken"):
        with staged(out, lambda p: FolderTaken(f"{p.name} taken")) as staging:
            (staging / "a.txt").write_text("mine")
            out.mkdir()
            (out / "b.txt").write_text("landed first")               # another writer landed meanwhile
    assert [p.name for p in out.iterdir()] == ["b.txt"] and [p.name for p in tmp_path.iterdir()] == ["export"]
    with pytest.raises(RuntimeError):                               # a failed writer leaves nothing
        with staged(tmp_path / "other", FolderTaken) as staging:
            (staging / "a.txt").write_text("half")
            raise RuntimeError("killed")
    assert [p.name for p in tmp_path.iterdir()] == ["export"]
    wins, lost = [], []
    barrier = threading.Barrier(6)

    def claim(i):
        barrier.wait()
        try:
            with claimed(tmp_path / "run"):
                wins.append(i)
                barrier2.wait()
        except FolderTaken as e:
            lost.append(str(e))
            barrier2.wait()
    barrier2 = threading.Barrier(6)
    threads = [threading.Thread(target=claim, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(wins) == 1 and len(lost) == 5 and all("is being written by hpnet (process" in m for m in lost)
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_a_busy_port_is_one_line_before_anything_loads(killed_run, capsys, monkeypatch):
    import socket

    import hpnet.commands.serve as serve
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run_cli(capsys, "serve", killed_run, "--port", port, "--quiet")
        one_line(code, err, rf"cannot listen on 127.0.0.1:{port} \(the port is in use by another program")
        monkeypatch.setattr(serve, "check_listen", lambda host, port: None)   # taken between the check and the bind
        code, _, err = run_cli(capsys, "serve", killed_run, "--port", port, "--quiet", "--images", "8")
        one_line(code, err, rf"cannot listen on 127.0.0.1:{port} \(Address already in use")
