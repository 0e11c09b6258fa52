"""The ``hpnet`` command: parses arguments, calls the library, prints. Nothing else lives here."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from .errors import HPNetError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[fn.__name__.removeprefix("cmd_")] = fn
    return fn


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


def add_data_args(p: argparse.ArgumentParser, required: bool) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=["synthetic", "celeba", "csv"],
                   default="synthetic" if required else None,
                   help="synthetic faces (built in), a local CelebA folder, or a multi-label CSV")
    g.add_argument("--root", help="CelebA folder (holding celeba/ or the celeba folder itself), "
                                  "or the CSV file / its folder")
    g.add_argument("--image-size", type=int, default=None, help="images are resized to S x S (default 64)")
    g.add_argument("--max-images", type=int, default=None, help="use at most N images per split")
    g.add_argument("--attributes", type=name_list, default=None, help="comma-separated attribute subset")
    g.add_argument("--valid-fraction", type=float, default=0.1,
                   help="share of training images held out for validation when the data has no valid split")
    g.add_argument("--cache-dir", default=None,
                   help="where decoded images are cached (default $HPNET_CACHE or ~/.cache/hpnet; 'none' disables)")


def data_spec(args: argparse.Namespace, seed: int = 0):
    from .data import DataSpec
    return DataSpec(dataset=args.dataset, root=args.root, image_size=args.image_size or 64,
                    max_images=args.max_images, attributes=args.attributes, seed=seed,
                    valid_fraction=args.valid_fraction, cache_dir=args.cache_dir)


# ----------------------------------------------------------------------------------------------


@command
def cmd_train(args: argparse.Namespace) -> int:
    from .api import train_run
    from .train import TrainConfig
    model = {"backbone": args.backbone, "head": args.head, "l1_norm": args.l1_norm}
    if args.widths:
        model["widths"] = args.widths
    if args.dilations:
        model["dilations"] = args.dilations
    elif args.widths and args.backbone == "paper" and len(args.widths) != 4:
        model["dilations"] = (1, 2, 3, 2, 1, 2, 3, 2)[:len(args.widths)]
    if args.resume:  # the run's own settings; only --epochs may extend it
        cfg = TrainConfig(epochs=args.epochs) if args.epochs else None
        record = train_run(args.out, None, resume=True, train=cfg, progress=not args.quiet)
        return _after_training(args, record)
    cfg = TrainConfig(epochs=args.epochs or 10, batch_size=args.batch_size, lr=args.lr,
                      weight_decay=args.weight_decay, l1_lambda=args.l1_lambda, seed=args.seed,
                      amp=not args.no_amp, device=args.device, num_workers=args.workers)
    record = train_run(args.out, data_spec(args, args.seed), model, cfg, progress=not args.quiet)
    return _after_training(args, record)


def _after_training(args: argparse.Namespace, record: dict) -> int:
    from .api import evaluate_run, format_table
    from .train import world
    if world()[0] == 0:
        print(f"trained {record['epochs_done']} epochs into {args.out}")
        if not args.no_eval:
            result = evaluate_run(args.out, progress=not args.quiet)
            print(f"{result['split']} split, {result['images']} images:")
            print(format_table(result))
    return 0


@command
def cmd_eval(args: argparse.Namespace) -> int:
    from .api import evaluate_run, format_table
    spec = data_spec(args) if args.dataset else None
    if spec is not None and args.image_size is None:
        from .train import read_run
        spec.image_size = read_run(args.run)["data"]["image_size"]
    result = evaluate_run(args.run, spec, args.split, progress=not args.json)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['split']} split, {result['images']} images:")
        print(format_table(result))
    return 0


@command
def cmd_prune(args: argparse.Namespace) -> int:
    from .ops.pruning import prune_run
    result = prune_run(args.run, methods=args.method, rule=args.rule, grid=args.grid, seeds=args.seeds,
                       split=args.split, max_images=args.max_images, keep=args.keep, save=args.save,
                       device=args.device, progress=not args.quiet, correlation=args.correlation,
                       reconstruct=not args.no_reconstruct, fit_images=args.fit_images)
    title = "classifiers reconstructed" if result["reconstructed"] else "classifiers unchanged"
    sections = [(title, result["methods"])]
    if result["reconstructed"]:
        sections.append(("classifiers unchanged", result["methods_heads_unchanged"]))
    for title, methods in sections:
        print(f"accuracy after pruning P channels ({title}):")
        for method, curve in methods.items():
            points = ", ".join(f"{p[0]}: {100 * p[1]:.1f}%" for p in curve)
            print(f"{method:>24}  {points}")
    if result.get("physical"):
        print(json.dumps(result["physical"], indent=2))
    print(f"wrote {Path(args.run) / 'pruning.json'}")
    return 0


@command
def cmd_robust(args: argparse.Namespace) -> int:
    from .ops.robust import robust_run
    result = robust_run(args.run, ns=args.n, betas=args.beta, noise_stds=args.noise, clip=args.clip,
                        select=args.select, split=args.split, max_images=args.max_images,
                        device=args.device, progress=not args.quiet)
    for row in result["results"]:
        print(f"n={row['n']:<4g} beta={row['beta']:<4g} noise={row['noise_std']:<4g} "
              f"accuracy={100 * row['accuracy']:.2f}%")
    if result.get("selection"):
        sel = result["selection"]
        test = sel["test"]
        print(f"(n, beta) chosen per attribute on {sel['selection_split']} at noise {sel['noise_std']:g}: "
              f"{sel['test_split']} accuracy {100 * test['accuracy_selected']:.2f}% "
              f"(identity {100 * test['accuracy_identity']:.2f}%)")
    print(f"wrote {Path(args.run) / 'robustness.json'}")
    return 0


@command
def cmd_analyse(args: argparse.Namespace) -> int:
    from .analysis.attention import analyse_run
    result = analyse_run(args.run, attributes=args.attributes, samples=args.samples,
                         max_images=args.max_images or 2000, device=args.device, progress=not args.quiet)
    for row in result["attribute_table"]:
        top = ", ".join(f"{t['name']} ({t['correlation']:.2f})" for t in row["top"])
        print(f"{row['attribute']:>20}: {top}")
    print(f"wrote {Path(args.run) / 'analysis.json'} and figures in {Path(args.run) / 'figures'}")
    return 0


@command
def cmd_report(args: argparse.Namespace) -> int:
    from .api import write_full_report
    print(write_full_report(args.run, args.out))
    return 0


@command
def cmd_predictability(args: argparse.Namespace) -> int:
    from .analysis.predictability import RESULT_FILE, format_summary, predictability_run
    result = predictability_run(args.run, plain_run=args.plain, epochs=args.epochs,
                                max_images=args.max_images, localisation_images=args.localisation_images,
                                n_boot=args.boot, backend=args.explainer, device=args.device,
                                progress=not args.quiet)
    print(format_summary(result))
    print(f"wrote {Path(args.run) / RESULT_FILE} and figures in {Path(args.run) / 'figures'}")
    return 0


@command
def cmd_demo(args: argparse.Namespace) -> int:
    from .api import demo
    sizes = {k: v for k, v in (("images", args.max_images), ("epochs", args.epochs)) if v is not None}
    demo(args.out, progress=not args.quiet, **sizes)
    return 0


# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpnet", description="Human-predictable neural networks.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a network into a run folder")
    add_data_args(p, required=True)
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 10; with --resume: "
                                                            "raise the run's number of epochs)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--l1-lambda", type=float, default=1e-5, help="weight of the mask L1 term (Eq. 10)")
    p.add_argument("--l1-norm", choices=["position_mean", "mean", "sum"], default="position_mean",
                   help="normalisation of ||M||_1 (see README)")
    p.add_argument("--backbone", choices=["paper", "strided"], default="paper")
    p.add_argument("--widths", type=int_list, default=None, help="channel widths, e.g. 32,64,64,128")
    p.add_argument("--dilations", type=int_list, default=None, help="paper backbone dilations, e.g. 1,2,3,2")
    p.add_argument("--head", choices=["attention", "linear"], default="attention",
                   help="attention heads (the paper) or a plain GAP + linear head (baseline)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--workers", type=int, default=2, help="data loader workers for uncached sources")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("eval", help="per-attribute accuracy of a run's model")
    p.add_argument("run", help="run folder")
    add_data_args(p, required=False)
    p.add_argument("--split", default=None, help="train, valid, test or several (valid,test); "
                                                 "default test, or valid when test is empty")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("prune", help="semantic channel pruning against random, L1 and attention (Fig. 7)")
    p.add_argument("run", help="run folder")
    p.add_argument("--method", type=name_list, default=["semantic", "random", "l1", "attention"],
                   help="methods, comma separated (default all: semantic,random,l1,attention)")
    p.add_argument("--rule", choices=["lower", "higher"], default="lower",
                   help="of a correlated pair, prune the channel with the lower (default) or higher filter L1")
    p.add_argument("--grid", type=count_list, default=None,
                   help="numbers of pruned channels to evaluate (default about 17 points from 0 to C)")
    p.add_argument("--correlation", choices=["contributions", "features"], default="contributions",
                   help="what the semantic scan correlates: the channels' contributions to the logits "
                        "(default) or the features over every position (the paper's Fig. 6); the other "
                        "is reported as semantic_<kind>")
    p.add_argument("--no-reconstruct", action="store_true",
                   help="evaluate pruned models with their classifiers unchanged only (default: also "
                        "refit w_k, b_k by least squares to the original logits, and report those)")
    p.add_argument("--fit-images", type=int, default=1000,
                   help="training images the reconstruction is fitted on (default 1000)")
    p.add_argument("--seeds", type=int, default=5, help="random orders averaged")
    p.add_argument("--keep", type=int, default=None, help="also prune physically to N channels")
    p.add_argument("--save", default=None, help="with --keep: write the smaller model as a run folder")
    add_eval_args(p)

    p = sub.add_parser("robust", help="attention mask transformation under input noise (Fig. 8)")
    p.add_argument("run", help="run folder")
    p.add_argument("--n", type=float_list, default=[1.0, 2.0, 4.0], help="tone curve exponents n")
    p.add_argument("--beta", type=float_list, default=[0.0, 0.2, 0.5], help="suppression values beta")
    p.add_argument("--noise", type=float_list, default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
                   help="Gaussian noise std on [0, 1] images")
    p.add_argument("--clip", action="store_true", help="clip noisy images to [0, 1]")
    p.add_argument("--select", action="store_true",
                   help="also pick (n, beta) per attribute on validation data and report test accuracy")
    add_eval_args(p)

    p = sub.add_parser("analyse", aliases=["analyze"], help="Fig. 4, 5, 6 and Table 4")
    p.add_argument("run", help="run folder")
    p.add_argument("--attributes", type=name_list, default=None, help="attributes shown in Fig. 4")
    p.add_argument("--samples", type=int, default=4, help="sample images in Fig. 4")
    add_eval_args(p, split=False)

    p = sub.add_parser("report", help="one self-contained HTML page with every table and figure")
    p.add_argument("run", help="run folder")
    p.add_argument("--out", default=None, help="HTML file (default RUN/report.html)")

    p = sub.add_parser("predictability", help="score how predictable pruning and the mask transformation "
                                              "are, against a plain CNN and post-hoc explainers")
    p.add_argument("run", help="attention run folder")
    p.add_argument("--plain", default=None, help="a trained plain-CNN run on the same data "
                                                 "(default: train one into RUN/plain with the run's settings)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the plain CNN (default: the run's)")
    p.add_argument("--max-images", type=int, default=256, help="evaluation images the operations are measured on")
    p.add_argument("--localisation-images", type=int, default=32, help="synthetic images for localisation")
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--explainer", choices=["builtin", "captum", "auto"], default="builtin",
                   help="Grad-CAM and saliency: written here, through Captum, or Captum when installed")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("demo", help="the whole pipeline on synthetic faces")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--epochs", type=int, default=None, help="default 5")
    p.add_argument("--max-images", type=int, default=None, help="training images (default 8000)")
    p.add_argument("--quiet", action="store_true")
    return parser


def add_eval_args(p: argparse.ArgumentParser, split: bool = True) -> None:
    if split:
        p.add_argument("--split", default=None, help="evaluation split (default test, or valid when empty)")
    p.add_argument("--max-images", type=int, default=None, help="evaluate on at most N images")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    name = {"analyze": "analyse"}.get(args.command, args.command)
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
