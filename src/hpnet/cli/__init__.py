"""The ``hpnet`` command: parses arguments into the library's settings, calls a command, prints.

Every setting's flag is built from its settings dataclass (:mod:`.flags`): choices come from the
library's registries and defaults from the dataclasses, so the help always says what the library
does. Nothing else lives here.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from ..analysis.attention import AnalysisSettings
from ..analysis.dissect import DissectSettings
from ..commands.compare import CompareSettings
from ..commands.evaluate import EvalSettings
from ..data import DataSpec
from ..errors import HPNetError
from ..model import BACKBONES, ModelConfig
from ..ops.pruning import PruneSettings
from ..ops.robust import RobustSettings
from ..predictability import PredictabilitySettings
from ..train import TrainConfig
from .flags import default, given, settings
from .parser import build_parser

__all__ = ["build_parser", "main"]

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[fn.__name__.removeprefix("cmd_")] = fn
    return fn


@command
def cmd_train(args: argparse.Namespace) -> int:
    from ..commands import train_run
    if args.resume:  # the run's own settings: only --epochs may extend it, any other setting given must match
        record = train_run(args.out, given(args, DataSpec), given(args, ModelConfig), given(args, TrainConfig),
                           resume=True, progress=not args.quiet, overwrite=args.overwrite)
        return _after_training(args, record)
    cfg = settings(args, TrainConfig)
    data = settings(args, DataSpec, seed=cfg.seed)
    record = train_run(args.out, data, model_settings(args), cfg, progress=not args.quiet, overwrite=args.overwrite)
    return _after_training(args, record)


def model_settings(args: argparse.Namespace) -> dict:
    """The ModelConfig fields given, with the backbone and the L1 norm always (compare.json records
    them); without --dilations, the backbone's settings that follow the depth of --widths."""
    model = {"backbone": default(ModelConfig, "backbone"), "l1_norm": default(ModelConfig, "l1_norm")}
    model.update(given(args, ModelConfig))
    if "widths" in model and "dilations" not in model:
        model.update(BACKBONES.get(model["backbone"]).defaults(model["widths"]))
    return model


def _after_training(args: argparse.Namespace, record: dict) -> int:
    from ..commands import evaluate_run
    from ..distributed import is_main
    from ..report.text import format_table
    if is_main():
        print(f"trained {record['epochs_done']} epochs into {args.out}")
        if not args.no_eval:
            result = evaluate_run(args.out, progress=not args.quiet)
            print(f"{result.split} split, {result.images} images:")
            print(format_table(result))
    return 0


@command
def cmd_eval(args: argparse.Namespace) -> int:
    from ..commands import evaluate_run
    from ..report.text import format_table
    from ..run import Run
    spec, data = None, given(args, DataSpec)
    if "dataset" in data:  # other data, by default at the run's image size
        run_size = (Run.open(args.run).record.get("data") or {}).get("image_size")
        if run_size:
            data.setdefault("image_size", run_size)
        spec = DataSpec(**data)
    result = evaluate_run(args.run, settings(args, EvalSettings, data=spec), progress=not args.json)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(f"{result.split} split, {result.images} images:")
        print(format_table(result))
    return 0


@command
def cmd_prune(args: argparse.Namespace) -> int:
    from ..commands import prune_run
    result = prune_run(args.run, settings(args, PruneSettings), device=args.device, progress=not args.quiet)
    title = "classifiers reconstructed" if result.reconstructed else "classifiers unchanged"
    sections = [(title, result.methods)]
    if result.reconstructed:
        sections.append(("classifiers unchanged", result.methods_heads_unchanged))
    for title, methods in sections:
        print(f"accuracy after pruning P channels ({title}):")
        for method, curve in methods.items():
            points = ", ".join(f"{p[0]}: {100 * p[1]:.1f}%" for p in curve)
            print(f"{method:>24}  {points}")
    if result.physical:
        print(json.dumps(result.physical, indent=2))
    print(f"wrote {Path(args.run) / result.file_name}")
    return 0


@command
def cmd_robust(args: argparse.Namespace) -> int:
    from ..commands import robust_run
    result = robust_run(args.run, settings(args, RobustSettings), device=args.device, progress=not args.quiet)
    for row in result.results:
        print(f"n={row['n']:<4g} beta={row['beta']:<4g} noise={row['noise_std']:<4g} "
              f"accuracy={100 * row['accuracy']:.2f}%")
    if result.selection:
        sel = result.selection
        test = sel["test"]
        print(f"(n, beta) chosen per attribute on {sel['selection_split']} at noise {sel['noise_std']:g}: "
              f"{sel['test_split']} accuracy {100 * test['accuracy_selected']:.2f}% "
              f"(identity {100 * test['accuracy_identity']:.2f}%)")
    print(f"wrote {Path(args.run) / result.file_name}")
    return 0


@command
def cmd_analyse(args: argparse.Namespace) -> int:
    from ..commands import analyse_run
    result = analyse_run(args.run, settings(args, AnalysisSettings), device=args.device, progress=not args.quiet)
    for row in result.attribute_table:
        top = ", ".join(f"{t['name']} ({t['correlation']:.2f})" for t in row["top"])
        print(f"{row['attribute']:>20}: {top}")
    print(f"wrote {Path(args.run) / result.file_name} and figures in {Path(args.run) / 'figures'}")
    return 0


@command
def cmd_dissect(args: argparse.Namespace) -> int:
    from ..commands import dissect_run
    from ..report.text import format_dissect
    from ..run import Run
    spec, data = None, given(args, DataSpec)
    if "dataset" in data or "root" in data:  # other data, by default of the run's kind and image size
        recorded = Run.open(args.run).record.get("data") or {}
        for key in ("dataset", "image_size"):
            if recorded.get(key):
                data.setdefault(key, recorded[key])
        spec = DataSpec(**data)
    result = dissect_run(args.run, settings(args, DissectSettings), data=spec, device=args.device,
                         progress=not (args.quiet or args.json))
    print(json.dumps(result.to_json()) if args.json else format_dissect(result))
    if not args.json:
        print(f"wrote {Path(args.run) / result.file_name} and {Path(args.run) / result.figures['roles']}")
    return 0


@command
def cmd_report(args: argparse.Namespace) -> int:
    from ..commands import report_run
    print(report_run(args.run, args.out))
    return 0


@command
def cmd_predictability(args: argparse.Namespace) -> int:
    from ..commands import predictability_run
    from ..report.text import format_summary
    result = predictability_run(args.run, settings(args, PredictabilitySettings), device=args.device,
                                progress=not args.quiet)
    print(format_summary(result))
    print(f"wrote {Path(args.run) / result.file_name} and figures in {Path(args.run) / 'figures'}")
    return 0


@command
def cmd_compare(args: argparse.Namespace) -> int:
    from ..commands.compare import compare_run
    from ..report.compare import format_compare
    compare = settings(args, CompareSettings, scoring=settings(args, PredictabilitySettings))
    cfg = settings(args, TrainConfig)
    result = compare_run(args.out, settings(args, DataSpec), model_settings(args), cfg, compare, device=cfg.device,
                         progress=not args.quiet, overwrite=args.overwrite)
    print(format_compare(result))
    print(f"wrote {Path(args.out) / result.file_name} and {Path(args.out) / 'report.html'}")
    return 0


@command
def cmd_serve(args: argparse.Namespace) -> int:
    from ..commands.serve import serve_run
    serve_run(args.run, args.host, args.port, args.images, progress=not args.quiet,
              ready=lambda line: print(line, flush=True))
    return 0


@command
def cmd_hitl_score(args: argparse.Namespace) -> int:
    from ..commands.serve import hitl_score_run
    from ..report.text import format_hitl
    result = hitl_score_run(args.run, n_boot=args.boot)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(result.to_json(), indent=2) if args.json else format_hitl(result))
    return 0


@command
def cmd_study(args: argparse.Namespace) -> int:
    from ..commands import study as steps
    from ..report.text import format_study
    from ..predictability.human import DIRECTION_TOLERANCE
    from ..study import StudySettings
    if args.study_command == "create":
        study = steps.study_create(args.study, settings(args, StudySettings), progress=not args.quiet)
        print(f"created {study.path} ({len(study.learn)} learning and {len(study.test)} test items)")
        for label, share in study.measurable().items():
            print(f"  {label} = {study.networks[label]['identity']}: {100 * share:.0f}% of its shown attributes "
                  f"change by at least {DIRECTION_TOLERANCE:g} logit sd")
        print(f"next: hpnet study serve {study.path}   and   hpnet study invite {study.path} -n 20")
    elif args.study_command == "invite":
        print("\n".join(steps.study_invite(args.study, args.n, args.url)))
    elif args.study_command == "serve":
        steps.study_serve(args.study, args.host, args.port, tuple(args.allow_host), args.threads,
                          ready=lambda line: print(line, flush=True))
    else:
        result = steps.study_score(args.study, args.boot, args.csv)
        print(json.dumps(result.to_json(), indent=2) if args.json else format_study(result))
    return 0


@command
def cmd_demo(args: argparse.Namespace) -> int:
    from ..commands import demo
    asked = {"images": args.max_images, "epochs": args.epochs}
    demo(args.out, progress=not args.quiet, **{k: v for k, v in asked.items() if v is not None})
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``hpnet`` command on ``argv``; returns the exit status (0, 2 for bad input, 130)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or arguments argparse refused (one line printed)
        return done.code if isinstance(done.code, int) else 2
    name = {"analyze": "analyse"}.get(args.command, args.command).replace("-", "_")
    try:
        return COMMANDS[name](args)
    except HPNetError as e:
        print(f"hpnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

