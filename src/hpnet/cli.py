"""The ``hpnet`` command: parses arguments into the library's settings, calls a command, prints.

Choices come from the library's registries (backbones, heads, data sources, pruning scorers,
correlation kinds) and defaults from its settings dataclasses, so the help always says what the
library does. Nothing else lives here.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import sys
from pathlib import Path
from typing import Any, Callable

from .analysis.attention import AnalysisSettings
from .analysis.correlation import CORRELATIONS
from .commands.compare import CompareSettings
from .data import SOURCES, DataSpec
from .errors import HPNetError
from .model import BACKBONES, HEADS, L1_NORMS, ModelConfig
from .ops.pruning import RULES, SCORERS, PruneSettings
from .ops.robust import RobustSettings
from .predictability import BACKENDS, PredictabilitySettings

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[fn.__name__.removeprefix("cmd_")] = fn
    return fn


def default(cls: type, name: str) -> Any:
    """The default of field ``name`` of the settings dataclass ``cls``."""
    f = cls.__dataclass_fields__[name]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def given(**values: Any) -> dict[str, Any]:
    """The arguments the user gave (argparse leaves the others None)."""
    return {k: v for k, v in values.items() if v is not None}


def int_list(text: str, smallest: int = 1) -> tuple[int, ...]:
    """Comma-separated integers, each at least ``smallest`` (1 or 0)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < smallest:
        kind = "positive" if smallest == 1 else "non-negative"
        raise argparse.ArgumentTypeError(f"expected {kind} integers, got {text!r}")
    return values


def count_list(text: str) -> list[int]:
    """Comma-separated counts that may include 0 (e.g. numbers of pruned channels)."""
    return list(int_list(text, smallest=0))


def float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def numbers(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def add_data_args(p: argparse.ArgumentParser, required: bool) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=SOURCES.names(), default=default(DataSpec, "dataset") if required else None,
                   help="; ".join(f"{name}: {s.help}" for name, s in SOURCES.items()))
    g.add_argument("--root", help="CelebA folder (holding celeba/ or the celeba folder itself), "
                                  "or the CSV file / its folder")
    g.add_argument("--image-size", type=int, default=None,
                   help=f"images are resized to S x S (default {default(DataSpec, 'image_size')}"
                        + ("" if required else ", or the run's") + ")")
    g.add_argument("--max-images", type=int, default=None, help="use at most N images per split")
    g.add_argument("--attributes", type=name_list, default=None, help="comma-separated attribute subset")
    g.add_argument("--valid-fraction", type=float, default=default(DataSpec, "valid_fraction"),
                   help="share of training images held out for validation when the data has no valid split")
    g.add_argument("--cache-dir", default=None,
                   help="where decoded images are cached (default $HPNET_CACHE or ~/.cache/hpnet; 'none' disables)")


def data_spec(args: argparse.Namespace, seed: int = 0, image_size: int | None = None) -> DataSpec:
    image_size = args.image_size if args.image_size is not None else image_size
    return DataSpec(**given(dataset=args.dataset, root=args.root, image_size=image_size,
                            max_images=args.max_images, attributes=args.attributes, seed=seed,
                            valid_fraction=args.valid_fraction, cache_dir=args.cache_dir))


# ----------------------------------------------------------------------------------------------
# the commands


@command
def cmd_train(args: argparse.Namespace) -> int:
    from .commands import train_run
    from .train import TrainConfig
    if args.resume:  # the run's own settings; only --epochs may extend it
        cfg = TrainConfig(epochs=args.epochs) if args.epochs is not None else None
        record = train_run(args.out, None, resume=True, train=cfg, progress=not args.quiet)
        return _after_training(args, record)
    model, cfg = model_settings(args), train_settings(args, seed=args.seed)
    record = train_run(args.out, data_spec(args, args.seed), model, cfg, progress=not args.quiet)
    return _after_training(args, record)


def model_settings(args: argparse.Namespace) -> dict:
    """ModelConfig fields from the training arguments (the head when the command has one)."""
    model = given(backbone=args.backbone, head=getattr(args, "head", None), l1_norm=args.l1_norm,
                  widths=args.widths, dilations=args.dilations)
    if args.widths and args.dilations is None:  # settings that follow the depth, e.g. dilations
        model.update(BACKBONES.get(args.backbone).defaults(args.widths))
    return model


def train_settings(args: argparse.Namespace, seed: int = 0):
    from .train import TrainConfig
    return TrainConfig(**given(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                               weight_decay=args.weight_decay, l1_lambda=args.l1_lambda, seed=seed,
                               max_loss_ratio=args.max_loss_ratio, train_noise=args.train_noise,
                               train_noise_p=args.train_noise_p, amp=not args.no_amp, device=args.device,
                               num_workers=args.workers))


def _after_training(args: argparse.Namespace, record: dict) -> int:
    from .commands import evaluate_run
    from .distributed import is_main
    from .report.text import format_table
    if is_main():
        print(f"trained {record['epochs_done']} epochs into {args.out}")
        if not args.no_eval:
            result = evaluate_run(args.out, progress=not args.quiet)
            print(f"{result.split} split, {result.images} images:")
            print(format_table(result))
    return 0


@command
def cmd_eval(args: argparse.Namespace) -> int:
    from .commands import EvalSettings, evaluate_run
    from .report.text import format_table
    from .run import Run
    spec = None
    if args.dataset:  # other data, by default at the run's image size
        spec = data_spec(args, image_size=(Run.open(args.run).record.get("data") or {}).get("image_size"))
    result = evaluate_run(args.run, EvalSettings(data=spec, split=args.split), progress=not args.json)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(f"{result.split} split, {result.images} images:")
        print(format_table(result))
    return 0


@command
def cmd_prune(args: argparse.Namespace) -> int:
    from .commands import prune_run
    settings = PruneSettings(**given(
        methods=args.method, rule=args.rule, grid=args.grid, seeds=args.seeds, split=args.split,
        max_images=args.max_images, keep=args.keep, save=args.save, correlation=args.correlation,
        reconstruct=not args.no_reconstruct, fit_images=args.fit_images))
    result = prune_run(args.run, settings, device=args.device, progress=not args.quiet)
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
    from .commands import robust_run
    settings = RobustSettings(**given(ns=args.n, betas=args.beta, noise_stds=args.noise, clip=args.clip,
                                      select=args.select, split=args.split, max_images=args.max_images))
    result = robust_run(args.run, settings, device=args.device, progress=not args.quiet)
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
    from .commands import analyse_run
    settings = AnalysisSettings(**given(attributes=args.attributes, samples=args.samples,
                                        max_images=args.max_images))
    result = analyse_run(args.run, settings, device=args.device, progress=not args.quiet)
    for row in result.attribute_table:
        top = ", ".join(f"{t['name']} ({t['correlation']:.2f})" for t in row["top"])
        print(f"{row['attribute']:>20}: {top}")
    print(f"wrote {Path(args.run) / result.file_name} and figures in {Path(args.run) / 'figures'}")
    return 0


@command
def cmd_report(args: argparse.Namespace) -> int:
    from .commands import report_run
    print(report_run(args.run, args.out))
    return 0


@command
def cmd_predictability(args: argparse.Namespace) -> int:
    from .commands import predictability_run
    from .report.text import format_summary
    settings = PredictabilitySettings(**given(
        plain_run=args.plain, epochs=args.epochs, max_images=args.max_images,
        localisation_images=args.localisation_images, n_boot=args.boot, backend=args.explainer))
    result = predictability_run(args.run, settings, device=args.device, progress=not args.quiet)
    print(format_summary(result))
    print(f"wrote {Path(args.run) / result.file_name} and figures in {Path(args.run) / 'figures'}")
    return 0


@command
def cmd_compare(args: argparse.Namespace) -> int:
    from .commands.compare import compare_run
    from .report.text import format_compare
    scoring = PredictabilitySettings(localisation_images=args.localisation_images, n_boot=args.boot)
    settings = CompareSettings(**given(heads=args.heads, seeds=args.seeds, l1_lambdas=args.l1_lambdas,
                                       train_noises=args.train_noises, variant_heads=args.variant_heads,
                                       noise_stds=args.noise), scoring=scoring)
    train = train_settings(args)
    result = compare_run(args.out, data_spec(args), model_settings(args), train, settings, device=args.device,
                         progress=not args.quiet)
    print(format_compare(result))
    print(f"wrote {Path(args.out) / result.file_name} and {Path(args.out) / 'report.html'}")
    return 0


@command
def cmd_serve(args: argparse.Namespace) -> int:
    from .commands.serve import serve_run
    serve_run(args.run, args.host, args.port, args.images, progress=not args.quiet,
              ready=lambda line: print(line, flush=True))
    return 0


@command
def cmd_hitl_score(args: argparse.Namespace) -> int:
    from .commands.serve import hitl_score_run
    from .report.text import format_hitl
    result = hitl_score_run(args.run, n_boot=args.boot)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(result.to_json(), indent=2) if args.json else format_hitl(result))
    return 0


@command
def cmd_demo(args: argparse.Namespace) -> int:
    from .commands import demo
    demo(args.out, progress=not args.quiet, **given(images=args.max_images, epochs=args.epochs))
    return 0


# ----------------------------------------------------------------------------------------------
# the parser


class Parser(argparse.ArgumentParser):
    """argparse with bad arguments told in one line (``hpnet train: error: argument --lr: ...``), exit 2;
    ``--help`` shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from .train import TrainConfig
    parser = Parser(prog="hpnet", description="Human-predictable neural networks.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("train", help="train a network into a run folder")
    add_data_args(p, required=True)
    p.add_argument("--out", required=True, help="run folder to write")
    add_training_args(p, with_head=True)
    p.add_argument("--seed", type=int, default=default(TrainConfig, "seed"))
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("compare", help="train and score head families (and L1 strengths) over several seeds")
    add_data_args(p, required=True)
    p.add_argument("--out", required=True, help="folder of the comparison (a run folder per configuration and seed)")
    p.add_argument("--heads", type=name_list, default=None,
                   help=f"head families (default {','.join(default(CompareSettings, 'heads'))})")
    p.add_argument("--seeds", type=count_list, default=None,
                   help=f"training seeds (default {','.join(map(str, default(CompareSettings, 'seeds')))})")
    p.add_argument("--l1-lambdas", type=float_list, default=None,
                   help="further L1 strengths, each a configuration of every head with masks")
    p.add_argument("--train-noises", type=float_list, default=None,
                   help="further configurations trained with Gaussian noise of these stds (--train-noise-p)")
    p.add_argument("--variant-heads", type=name_list, default=None,
                   help="the heads that get the --l1-lambdas and --train-noises variants (default all)")
    p.add_argument("--noise", type=float_list, default=None,
                   help=f"input noise stds measured (default {numbers(default(CompareSettings, 'noise_stds'))})")
    add_training_args(p, with_head=False)
    p.add_argument("--localisation-images", type=int, default=default(PredictabilitySettings, "localisation_images"),
                   help="synthetic images for localisation")
    p.add_argument("--boot", type=int, default=default(PredictabilitySettings, "n_boot"),
                   help="bootstrap resamples of each score's own interval")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("eval", help="per-attribute accuracy of a run's model")
    p.add_argument("run", help="run folder")
    add_data_args(p, required=False)
    p.add_argument("--split", default=None, help="train, valid, test or several (valid,test); "
                                                 "default test, or valid when test is empty")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("prune", help="semantic channel pruning against random, L1 and attention (Fig. 7)")
    p.add_argument("run", help="run folder")
    p.add_argument("--method", type=name_list, default=None,
                   help=f"methods, comma separated (default all: {','.join(SCORERS)})")
    p.add_argument("--rule", choices=RULES, default=default(PruneSettings, "rule"),
                   help="of a correlated pair, prune the channel with the lower (default) or higher filter L1")
    p.add_argument("--grid", type=count_list, default=None,
                   help="numbers of pruned channels to evaluate (default about 17 points from 0 to C)")
    p.add_argument("--correlation", choices=CORRELATIONS.names(), default=default(PruneSettings, "correlation"),
                   help="what the semantic scan correlates: the channels' contributions to the logits "
                        "(default) or the features over every position (the paper's Fig. 6); the other "
                        "is reported as semantic_<kind>")
    p.add_argument("--no-reconstruct", action="store_true",
                   help="evaluate pruned models with their classifiers unchanged only (default: also "
                        "refit w_k, b_k by least squares to the original logits, and report those)")
    p.add_argument("--fit-images", type=int, default=default(PruneSettings, "fit_images"),
                   help="training images the reconstruction is fitted on (default %(default)s)")
    p.add_argument("--seeds", type=int, default=default(PruneSettings, "seeds"), help="random orders averaged")
    p.add_argument("--keep", type=int, default=None, help="also prune physically to N channels")
    p.add_argument("--save", default=None, help="with --keep: write the smaller model as a run folder")
    add_eval_args(p)

    p = sub.add_parser("robust", help="attention mask transformation under input noise (Fig. 8)")
    p.add_argument("run", help="run folder")
    p.add_argument("--n", type=float_list, default=None,
                   help=f"tone curve exponents n (default {numbers(default(RobustSettings, 'ns'))})")
    p.add_argument("--beta", type=float_list, default=None,
                   help=f"suppression values beta (default {numbers(default(RobustSettings, 'betas'))})")
    p.add_argument("--noise", type=float_list, default=None,
                   help=f"Gaussian noise std on [0, 1] images (default {numbers(default(RobustSettings, 'noise_stds'))})")
    p.add_argument("--clip", action="store_true", help="clip noisy images to [0, 1]")
    p.add_argument("--select", action="store_true",
                   help="also pick (n, beta) per attribute on validation data and report test accuracy")
    add_eval_args(p)

    p = sub.add_parser("analyse", aliases=["analyze"], help="Fig. 4, 5, 6 and Table 4")
    p.add_argument("run", help="run folder")
    p.add_argument("--attributes", type=name_list, default=None, help="attributes shown in Fig. 4")
    p.add_argument("--samples", type=int, default=default(AnalysisSettings, "samples"),
                   help="sample images in Fig. 4")
    add_eval_args(p, split=False, max_images=default(AnalysisSettings, "max_images"))

    p = sub.add_parser("report", help="one self-contained HTML page with every table and figure")
    p.add_argument("run", help="run folder")
    p.add_argument("--out", default=None, help="HTML file (default RUN/report.html)")

    p = sub.add_parser("predictability", help="score how predictable pruning and the mask transformation "
                                              "are, against a plain CNN and post-hoc explainers")
    p.add_argument("run", help="attention run folder")
    p.add_argument("--plain", default=None, help="a trained plain-CNN run on the same data "
                                                 "(default: train one into RUN/plain with the run's settings)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the plain CNN (default: the run's)")
    p.add_argument("--localisation-images", type=int, default=default(PredictabilitySettings, "localisation_images"),
                   help="synthetic images for localisation")
    p.add_argument("--boot", type=int, default=default(PredictabilitySettings, "n_boot"),
                   help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--explainer", choices=BACKENDS, default=default(PredictabilitySettings, "backend"),
                   help="Grad-CAM and saliency: written here, through Captum, or Captum when installed")
    add_eval_args(p, split=False, max_images=default(PredictabilitySettings, "max_images"))

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

    from .commands import demo
    demo_defaults = inspect.signature(demo).parameters
    p = sub.add_parser("demo", help="the whole pipeline on synthetic faces")
    p.add_argument("--out", default=demo_defaults["out"].default)
    p.add_argument("--epochs", type=int, default=None, help=f"default {demo_defaults['epochs'].default}")
    p.add_argument("--max-images", type=int, default=None,
                   help=f"training images (default {demo_defaults['images'].default})")
    p.add_argument("--quiet", action="store_true")
    return parser


def add_training_args(p: argparse.ArgumentParser, with_head: bool) -> None:
    """The network and the training budget (train, and every configuration of compare)."""
    from .train import TrainConfig
    p.add_argument("--epochs", type=int, default=None,
                   help=f"epochs (default {default(TrainConfig, 'epochs')}; with --resume: raise the run's number)")
    p.add_argument("--batch-size", type=int, default=default(TrainConfig, "batch_size"))
    p.add_argument("--lr", type=float, default=default(TrainConfig, "lr"))
    p.add_argument("--weight-decay", type=float, default=default(TrainConfig, "weight_decay"))
    p.add_argument("--l1-lambda", type=float, default=default(TrainConfig, "l1_lambda"),
                   help="weight of the mask L1 term (Eq. 10)")
    p.add_argument("--l1-norm", choices=L1_NORMS, default=default(ModelConfig, "l1_norm"),
                   help="normalisation of ||M||_1 (see README)")
    p.add_argument("--backbone", choices=BACKBONES.names(), default=default(ModelConfig, "backbone"),
                   help="; ".join(f"{name}: {b.help}" for name, b in BACKBONES.items()))
    p.add_argument("--widths", type=int_list, default=None, help="channel widths, e.g. 32,64,64,128")
    p.add_argument("--dilations", type=int_list, default=None, help="paper backbone dilations, e.g. 1,2,3,2")
    if with_head:
        p.add_argument("--head", choices=HEADS.names(), default=default(ModelConfig, "head"),
                       help="; ".join(f"{name}: {h.help}" for name, h in HEADS.items()))
    p.add_argument("--max-loss-ratio", type=float, default=default(TrainConfig, "max_loss_ratio"),
                   help="stop (run marked failed) when a batch loss exceeds this times the run's first; 0: never. "
                        "A loss or gradient that is not finite always stops training")
    p.add_argument("--train-noise", type=float, default=default(TrainConfig, "train_noise"),
                   help="augmentation: Gaussian noise of this std on [0, 1] training images (default off)")
    p.add_argument("--train-noise-p", type=float, default=default(TrainConfig, "train_noise_p"),
                   help="the share of training images that get it (default %(default)s)")
    p.add_argument("--device", default=default(TrainConfig, "device"), help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--workers", type=int, default=default(TrainConfig, "num_workers"),
                   help="data loader workers for uncached sources")


def add_eval_args(p: argparse.ArgumentParser, split: bool = True, max_images: int | None = None) -> None:
    if split:
        p.add_argument("--split", default=None, help="evaluation split (default test, or valid when empty)")
    p.add_argument("--max-images", type=int, default=max_images,
                   help="evaluate on at most N images" + (f" (default {max_images})" if max_images else ""))
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


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


if __name__ == "__main__":
    sys.exit(main())
