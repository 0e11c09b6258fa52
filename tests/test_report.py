"""The figures and the one-page HTML report, from a hand-made run folder."""
import base64
import re

import numpy as np
import pytest
import torch

from hpnet.commands.serve import hitl_score_run
from hpnet.errors import HPNetError
from hpnet.io import atomic_write_json
from hpnet.model import HPNet, ModelConfig
from hpnet.predictability import human
from hpnet.report import figures as F
from hpnet.report.html import SECTIONS, write_report
from hpnet.report.text import score_text
from hpnet.results import PruningResult, RobustnessResult, TrialScoreResult
from hpnet.run import Run

NAMES = ["Smiling", "Black_Hair", "Male"]
PNG = b"\x89PNG\r\n\x1a\n"


def run_record() -> dict:
    model = HPNet(ModelConfig(NAMES, widths=(4, 8, 8, 8)))
    return {
        "model": model.config.to_dict(),
        "train": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "l1_lambda": 1e-5},
        "data": {"dataset": "synthetic", "root": None, "image_size": 16, "max_images": 32,
                 "attributes": NAMES, "seed": 0, "valid_fraction": 0.1},
        "train_images": 32, "valid_images": 8, "status": "done", "epochs_done": 2,
        "history": [{"epoch": 1, "loss": 2.1, "bce": 2.0, "mask_l1": 3.0, "images_per_s": 100.0,
                     "seconds": 0.3, "valid_mean_accuracy": 0.6},
                    {"epoch": 2, "loss": 1.9, "bce": 1.8, "mask_l1": 2.5, "images_per_s": 110.0,
                     "seconds": 0.3, "valid_mean_accuracy": 0.7}],
        "masks": {"mean": 0.4, "sparsity": 0.1, "threshold": 0.1, "images": 8},
        "train_positive_rate": [0.5, 0.2, 0.4],
    }


@pytest.fixture
def run_dir(tmp_path):
    """A minimal run: run.json and the model files only."""
    HPNet(ModelConfig(NAMES, widths=(4, 8, 8, 8))).save(tmp_path)
    atomic_write_json(run_record(), tmp_path / "run.json")
    return tmp_path


def add_results(run_dir):
    atomic_write_json({"mean_accuracy": 0.7, "mean_majority_baseline": 0.65, "images": 8, "split": "test",
                       "per_attribute": [{"name": n, "accuracy": a, "majority_baseline": 0.65, "positives": 3}
                                         for n, a in zip(NAMES, (0.75, 0.6, 0.75))]},
                      run_dir / "eval_test.json")
    atomic_write_json({"channels": 8, "rule": "lower", "methods": {
        "semantic": [[p, 0.7 - 0.01 * p] for p in range(9)],
        "random": [[p, 0.7 - 0.02 * p, 0.01] for p in range(9)],
        "l1": [[p, 0.7 - 0.015 * p] for p in range(9)]}}, run_dir / "pruning.json")
    atomic_write_json({"results": [{"n": n, "beta": b, "noise_std": s, "accuracy": 0.7 - s * (1 - b)}
                                   for n, b in ((1, 0), (2, 0.2)) for s in (0.0, 0.1, 0.2)],
                       "selection": {"n": [2, 1, 1], "beta": [0.2, 0, 0], "noise_std": 0.1,
                                     "test": {"accuracy_identity": 0.6, "accuracy_selected": 0.65},
                                     "chosen": [{"name": n, "n": k, "beta": b}
                                                for n, k, b in zip(NAMES, (2, 1, 1), (0.2, 0, 0))]}},
                      run_dir / "robustness.json")
    rng = np.random.default_rng(0)
    corr = np.corrcoef(rng.random((8, 20)))
    atomic_write_json({"attribute_names": NAMES, "backbone": "paper", "channels": 8,
                       "mean_mask_grid": rng.random((3, 8)).tolist(), "channel_correlation": corr.tolist(),
                       "cluster_order": list(range(8))[::-1],
                       "attribute_table": [{"attribute": n, "top": [{"name": "Male", "correlation": 0.5}]}
                                           for n in NAMES],
                       "top_channels": {n: [0, 1, 2] for n in NAMES}, "fig4_attributes": NAMES,
                       "images": {"mean_mask_grid": 8, "mean_mask_split": "test", "channel_correlation": 32}},
                      run_dir / "analysis.json")


def test_report_with_every_result(run_dir):
    add_results(run_dir)
    path = write_report(run_dir, extra_sections=[("Predictability <extra>", "<p>hello</p>")])
    assert path == run_dir / "report.html" and [p.name for p in run_dir.glob("*.html")] == ["report.html"]
    html = path.read_text()
    for title in SECTIONS.values():
        assert f">{title}</h2>" in html
    assert "Predictability &lt;extra&gt;</h2><p>hello</p>" in html
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 7 and all(base64.b64decode(b)[:8] == PNG for b in images)
    assert 'src="http' not in html and "<link" not in html and "<script" not in html
    assert "75.00%" in html and "Black_Hair" in html                  # accuracy table
    assert "50% pruned" in html and "Selected transformation" in html
    assert "n=2, beta=0.2</td><td>Smiling</td>" in html and "65.00%" in html
    assert "figures/fig4_mask_maps.png" in html                        # Fig. 4 PNG missing: a hint
    assert not list(run_dir.glob(".*.tmp"))


def test_missing_results_show_the_command_that_makes_them(run_dir, tmp_path):
    out = tmp_path / "elsewhere" / "r.html"
    html = write_report(run_dir, out=out).read_text()
    for command in ("hpnet eval", "hpnet analyse", "hpnet prune", "hpnet robust"):
        assert command in html
    assert html.count("data:image/png;base64,") >= 3                   # training + regression figures


def test_report_needs_a_run_folder(tmp_path):
    with pytest.raises(HPNetError, match="run.json"):
        write_report(tmp_path)


def test_figures_render_and_save_atomically(tmp_path):
    # the other figures are drawn by the report tests above
    figs = {
        "fig4": F.fig4_mask_maps(torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8),
                                 torch.rand(2, 2, 3, 16, 16), NAMES[:2], torch.tensor([[1, 2, 3], [4, 5, 6]])),
        "fig7": F.fig7_pruning(PruningResult.from_json({"methods": {"semantic": [[0, 0.7], [4, 0.6]],
                                                                    "random": [[0, 0.7, 0.0], [4, 0.5, 0.05]]}}),
                               majority_baseline=0.55),
    }
    for name, fig in figs.items():
        path = F.save_png(fig, tmp_path / f"{name}.png")
        assert path.read_bytes()[:8] == PNG, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig4.png", "fig7.png"]
    both = F.fig7_pruning(PruningResult.from_json({"methods": {"semantic": [[0, 0.7], [4, 0.65]]}, "reconstructed": True,
                                                   "correlation": "contributions", "rule": "lower",
                                                   "methods_heads_unchanged": {"semantic": [[0, 0.7], [4, 0.6]]}}))
    titles = [ax.get_title() for ax in both.axes]
    assert titles == ["classifiers reconstructed", "classifiers unchanged (plain removal)"]
    assert both.axes[0].get_legend() is None
    assert [t.get_text() for t in both.axes[1].get_legend().get_texts()] == ["semantic (contributions, rule lower)"]
    fig = F.fig8_robustness(RobustnessResult.from_json({"results": [{"n": 1, "beta": 0, "noise_std": 0.0,
                                                                     "accuracy": 0.7}]}))
    assert base64.b64decode(F.png_base64(fig))[:8] == PNG


# ---------------------------------------------------------------------------- people's predictions

TRIAL = {"attributes": NAMES, "person": [1, -2, 0], "formula": [0.2, -0.1, 0.0], "measured": [0.5, -0.4, 0.01],
         "network": "attention"}


def log_trials(run_dir, n: int):
    for i in range(n):
        human.append_trial(run_dir / "hitl" / "trials.jsonl", {**TRIAL, "measured": [0.5 + i, -0.4, 0.01 * i]})


def hitl_html(run_dir) -> str:
    page = write_report(run_dir).read_text()
    return page[page.index('<section id="hitl"'):page.index("</section>", page.index('<section id="hitl"'))]


def forbid_scoring(monkeypatch):
    """Every scoring function of the library raises (whichever name a caller imported, the bootstrap
    and the direction agreement are reached through the module): the report must only render."""
    def scoring(*args, **kwargs):
        raise AssertionError("the report scored the trials")

    for name in ("score_trials", "score_log", "score_trial_log", "trial_bootstrap", "direction_agreement", "spearman"):
        monkeypatch.setattr(human, name, scoring)


@pytest.fixture
def no_scoring(monkeypatch):
    forbid_scoring(monkeypatch)


def test_the_report_renders_the_written_score_without_scoring(run_dir, monkeypatch):
    log_trials(run_dir, 3)
    result = hitl_score_run(run_dir, n_boot=50)
    result.person = {**result.person, "score": 0.123}           # a number only the file holds
    Run.open(run_dir).write(result)
    forbid_scoring(monkeypatch)
    html = hitl_html(run_dir)
    assert "3 trials, 9 predictions" in html and "(50 resamples)" in html
    assert f"<td>person</td><td>0.123 [{result.person['ci_low']:.2f}" in html
    assert f"<td>formula</td><td>{score_text(result.formula)}</td>" in html
    assert "<td>no change, attention (3 trials)</td>" in html
    assert html.count("data:image/png;base64,") == 1 and 'class="note"' not in html
    from hpnet.report import hitl as section
    assert not {"score_trials", "score_log", "score_trial_log", "trial_bootstrap"} & set(vars(section))


def test_a_missing_or_stale_score_is_one_line_naming_the_command(run_dir, no_scoring):
    assert "No trial logged yet" in hitl_html(run_dir)
    log_trials(run_dir, 2)
    command = f"<code>hpnet hitl-score {run_dir}</code>"
    html = hitl_html(run_dir)
    assert html.count('class="note"') == 1 and "<table>" not in html and html.count("data:image/png") == 1
    assert f"<code>hitl/score.json</code> is not in the run folder yet: run {command}" in html
    Run.open(run_dir).write(TrialScoreResult(trials=1, pairs=3, person={}, formula={}, no_change={},
                                             log={"file": "trials.jsonl", "bytes": 10, "sha256": "0" * 64}))
    html = hitl_html(run_dir)
    assert html.count('class="note"') == 1 and "<table>" not in html and html.count("data:image/png") == 1
    assert "<code>hitl/score.json</code> is stale: the trial log has changed since it was scored (1 trials then, " \
           f"2 now); run {command} to score it again." in html
    atomic_write_json({"trials": 2, "log": "old/trials.jsonl"}, run_dir / "hitl" / "score.json")   # unreadable
    html = hitl_html(run_dir)
    assert html.count('class="note"') == 1 and "<table>" not in html and html.count("data:image/png") == 1
    assert "not a trial score result: missing pairs" in html and f"run {command} to score the trials again" in html
