"""The ``hpnet`` argument parser: the flags of the settings dataclasses (:mod:`.flags`), and the few
arguments that are no setting (run folders, ``--out``, ``--quiet``, ...)."""
from __future__ import annotations

import argparse
import inspect

from ..analysis.attention import AnalysisSettings
from ..analysis.dissect import DissectSettings
from ..commands.compare import CompareSettings
from ..commands.evaluate import EvalSettings
from ..data import DataSpec
from ..model import ModelConfig
from ..ops.pruning import PruneSettings
from ..ops.robust import RobustSettings
from ..predictability import PredictabilitySettings
from ..train import TrainConfig
from .flags import add_flags


class Parser(argparse.ArgumentParser):
    """argparse with bad arguments told in one line (``hpnet train: error: argument --lr: ...``), exit 2;
    ``--help`` shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hpnet", description="Human-predictable neural networks.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("train", help="train a network into a run folder")
    add_flags(p.add_argument_group("data"), DataSpec)
    p.add_argument("--out", required=True, help="run folder to write")
    add_flags(p, ModelConfig)
    add_flags(p, TrainConfig)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="clear --out first when it holds another run or its results (only a folder hpnet wrote)")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    add_quiet(p)

    p = sub.add_parser("compare", help="train and score head families (and L1 strengths) over several seeds")
    add_flags(p.add_argument_group("data"), DataSpec)
    p.add_argument("--out", required=True, help="folder of the comparison (a run folder per configuration and seed)")
    p.add_argument("--overwrite", action="store_true",
                   help="clear --out first (its finished runs are otherwise reused, a killed one resumed)")
    add_flags(p, CompareSettings)
    add_flags(p, ModelConfig, skip=["head"])            # the head is what is compared
    add_flags(p, TrainConfig, skip=["seed"])            # and the seeds are --seeds
    add_flags(p, PredictabilitySettings, only=["localisation_images", "n_boot", "operations"],
              helps={"n_boot": "bootstrap resamples of each score's own interval"})
    add_quiet(p)

    p = sub.add_parser("eval", help="per-attribute accuracy of a run's model")
    p.add_argument("run", help="run folder")
    add_flags(p.add_argument_group("data"), DataSpec,
              helps={"image_size": "images are resized to S x S (default {default}, or the run's)"})
    add_flags(p, EvalSettings)
    p.add_argument("--json", action="store_true", help="print one JSON object")

    add_run_command(sub, "prune", PruneSettings, "semantic channel pruning against random, L1 and attention (Fig. 7)")
    add_run_command(sub, "robust", RobustSettings, "attention mask transformation under input noise (Fig. 8)")
    add_run_command(sub, "analyse", AnalysisSettings, "Fig. 4, 5, 6 and Table 4", aliases=["analyze"])

    p = sub.add_parser("report", help="one self-contained HTML page with every table and figure")
    p.add_argument("run", help="run folder")
    p.add_argument("--out", default=None, help="HTML file (default RUN/report.html)")

    add_dissect_command(sub)
    add_run_command(sub, "predictability", PredictabilitySettings, "score how predictable pruning and the mask "
                    "transformation are, against a plain CNN and post-hoc explainers", run="attention run folder")

    add_page_commands(sub)
    add_study_command(sub)
    add_demo_command(sub)
    return parser


def add_page_commands(sub) -> None:
    """``hpnet serve`` (the page) and ``hpnet hitl-score`` (the score of its trial log)."""
    p = sub.add_parser("serve", help="a local page to look at a run, perturb it, predict, then see, and be scored")
    p.add_argument("run", help="run folder (its plain-CNN baseline in RUN/plain is served too)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 takes a free one)")
    p.add_argument("--images", type=int, default=256, help="evaluation images held ready (default 256)")
    p.add_argument("--quiet", action="store_true", help="no progress bars while loading")

    p = sub.add_parser("hitl-score", help="the score of the people's predictions logged by `hpnet serve`")
    p.add_argument("run", help="run folder (reads RUN/hitl/trials.jsonl, writes RUN/hitl/score.json)")
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples of the trials for the 95%% intervals")
    p.add_argument("--json", action="store_true", help="print the JSON instead of a table")


def add_study_command(sub) -> None:
    from ..study import StudySettings
    study = sub.add_parser("study", help="a predictability study with real people: create, invite, serve, score")
    steps = study.add_subparsers(dest="study_command", required=True, parser_class=Parser)
    p = steps.add_parser("create", help="draw the item bank of a study of some networks into a new folder")
    p.add_argument("study", help="study folder to create (holds study.sqlite)")
    add_flags(p, StudySettings)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p = steps.add_parser("invite", help="print links for new participants, one per line")
    p.add_argument("study", help="study folder")
    p.add_argument("-n", type=int, default=1, help="participants to invite (default 1)")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the server's address as people reach it")
    p = steps.add_parser("serve", help="serve the study to many people at once (waitress)")
    p.add_argument("study", help="study folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 takes a free one)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a name people reach the server by; needed to bind anything but localhost")
    p.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    p = steps.add_parser("score", help="the people's score per network, with intervals over people and items")
    p.add_argument("study", help="study folder (writes STUDY/score.json)")
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--csv", default=None, help="also write every answer, one row per attribute, to this CSV file")
    p.add_argument("--json", action="store_true", help="print the JSON instead of a table")


def add_run_command(sub, name: str, settings: type, help: str, aliases=(), run: str = "run folder") -> None:
    """A command on a run folder: its settings' flags, the device and the progress bars."""
    p = sub.add_parser(name, aliases=list(aliases), help=help)
    p.add_argument("run", help=run)
    add_flags(p, settings)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    add_quiet(p)


def add_dissect_command(sub) -> None:
    p = sub.add_parser("dissect", help="the face part where each feature channel fires (network dissection)")
    p.add_argument("run", help="run folder")
    add_flags(p, DissectSettings)
    add_flags(p.add_argument_group("data (default: the run's own)"), DataSpec, skip=["max_images"],
              helps={"image_size": "images are resized to S x S (default {default}, or the run's)"})
    p.add_argument("--json", action="store_true", help="print the JSON written to RUN/dissect.json")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    add_quiet(p)


def add_demo_command(sub) -> None:
    from ..commands import demo
    defaults = inspect.signature(demo).parameters
    p = sub.add_parser("demo", help="the whole pipeline on synthetic faces")
    p.add_argument("--out", default=defaults["out"].default)
    p.add_argument("--epochs", type=int, default=None, help=f"default {defaults['epochs'].default}")
    p.add_argument("--max-images", type=int, default=None,
                   help=f"training images (default {defaults['images'].default})")
    p.add_argument("--quiet", action="store_true")


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")
