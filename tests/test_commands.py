"""The commands end to end through the command line, and the checks every command shares (the Run)."""
import json
import shutil

import pytest

from clihelp import one_line, run_cli
from hpnet.cli import main
from hpnet.model import HEADS
from hpnet.results import RESULTS, EvaluationResult, PredictabilityResult, PruningResult
from hpnet.run import Run

NAMES = "Smiling,Eyeglasses,Wearing_Hat"
MASKED = [h for h in HEADS.names() if HEADS.get(h).masks]           # analyse reads masks: every head family with them
TRAIN = ["train", "--dataset", "synthetic", "--image-size", "16", "--max-images", "64", "--attributes", NAMES,
         "--backbone", "strided", "--widths", "4,6,8", "--epochs", "1", "--batch-size", "16", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("commands") / "run"
    assert main([*TRAIN, "--out", str(run)]) == 0
    return run


class Spy:
    """Records every result a Run writes and every result it reads back."""

    def __init__(self, monkeypatch):
        self.written: dict = {}
        self.read: list = []
        write, read, evaluations = Run.write, Run.read, Run.evaluations

        def spy_write(run, result):
            path = write(run, result)
            self.written[path.resolve()] = (type(result), result.to_json())
            return path

        def spy_read(run, kind, **key):
            result = read(run, kind, **key)
            if result is not None:
                self.read.append(((run.path / kind.file_for(**key)).resolve(), result))
            return result

        def spy_evaluations(run):
            results = evaluations(run)
            self.read += [((run.path / r.file_name).resolve(), r) for r in results]
            return results

        monkeypatch.setattr(Run, "write", spy_write)
        monkeypatch.setattr(Run, "read", spy_read)
        monkeypatch.setattr(Run, "evaluations", spy_evaluations)


@pytest.mark.parametrize("head", MASKED)
def test_every_result_the_report_reads_was_written_by_its_command(tmp_path, capsys, monkeypatch, head):
    spy = Spy(monkeypatch)
    run = tmp_path / "run"
    steps = [
        [*TRAIN, "--head", head, "--out", run],
        ["analyse", run, "--samples", "2", "--max-images", "32", "--quiet"],
        ["dissect", run, "--max-images", "32", "--boot", "50", "--quiet"],
        ["prune", run, "--grid", "0,4,8", "--seeds", "2", "--fit-images", "16", "--quiet"],
        ["robust", run, "--n", "1,2", "--beta", "0,0.5", "--noise", "0,0.2", "--select", "--max-images", "32",
         "--quiet"],
        ["predictability", run, "--max-images", "32", "--localisation-images", "4", "--boot", "50", "--quiet"],
    ]
    for step in steps:
        code, out, err = run_cli(capsys, *step)
        assert code == 0, (step[0], err)
    assert {kind for kind, _ in spy.written.values()} == set(RESULTS)      # every result type, by its writer
    for path, (kind, stored) in spy.written.items():
        assert path.parent == run.resolve() and path.name == kind.file_for(split="test")
        assert json.loads(path.read_text()) == stored
    assert (run / "plain" / "model.safetensors").is_file()

    spy.read.clear()
    code, out, err = run_cli(capsys, "report", run)
    assert code == 0, err
    assert {type(result) for _, result in spy.read} == set(RESULTS)         # the report reads every one
    for path, result in spy.read:
        assert path in spy.written, f"the report read {path}, which no command wrote"
        kind, stored = spy.written[path]
        assert isinstance(result, kind) and result.to_json() == stored      # read back as written
    html = (run / "report.html").read_text()
    evaluation = Run.open(run).read(EvaluationResult, split="test")
    assert f"{100 * evaluation.mean_accuracy:.2f}%" in html
    pruning = Run.open(run).read(PruningResult)
    assert all(f"<td>{method}</td>" in html for method in pruning.methods)
    predictability = Run.open(run).read(PredictabilityResult)
    for per_network in predictability.operations.values():       # every operation's score, every network
        assert all(f"{entry['score']:.3f}" in html for entry in per_network.values())
    assert "is not in the run folder yet" not in html


@pytest.mark.parametrize("edit", ["null", "missing"])
@pytest.mark.parametrize("command", ["eval", "analyse", "prune", "robust", "predictability", "resume"])
def test_a_run_without_data_settings_is_one_line_naming_run_json(trained, tmp_path, capsys, command, edit):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    record = json.loads((run / "run.json").read_text())
    if edit == "null":
        record["data"] = None
    else:
        del record["data"]
    (run / "run.json").write_text(json.dumps(record))
    before = sorted(p.name for p in run.iterdir())
    args = ["train", "--resume", "--out", run, "--quiet"] if command == "resume" else [command, run, "--quiet"]
    if command == "eval":
        args = ["eval", run]
    code, out, err = run_cli(capsys, *args)
    one_line(code, err, r"run\.json: the run records no data settings")
    assert sorted(p.name for p in run.iterdir()) == before                  # nothing written


def test_the_report_needs_no_data_settings(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    record = json.loads((run / "run.json").read_text())
    record["data"] = None
    (run / "run.json").write_text(json.dumps(record))
    code, out, err = run_cli(capsys, "report", run)
    assert code == 0, err and (run / "report.html").is_file()


def test_eval_json_is_the_written_result(trained, capsys):
    code, out, err = run_cli(capsys, "eval", trained, "--json")
    assert code == 0, err
    printed = json.loads(out)
    assert printed == json.loads((trained / EvaluationResult.file_for("test")).read_text())
    assert set(printed) == {"mean_accuracy", "mean_majority_baseline", "images", "per_attribute", "split",
                            "dataset", "backbone", "run"}
