"""Every command of the ``hpnet`` command line as a library function.

Each command opens a run folder (:class:`hpnet.run.Run`), calls pure operations and analyses
``(model, data, settings) -> result``, writes the result into the run folder and returns it:

    from hpnet.commands import prune_run
    from hpnet.ops.pruning import CurveSettings, PruneSettings
    result = prune_run("runs/demo", PruneSettings(curves=CurveSettings(grid=[0, 32, 64]), keep=32, save="runs/small"))
    result.methods["semantic"]                    # also in runs/demo/pruning.json

The command line (:mod:`hpnet.cli`) only parses arguments into these settings and prints results.
"""
from .analyse import analyse_run
from .demo import demo
from .dissect import dissect_run
from .evaluate import EvalSettings, evaluate_run
from .predictability import predictability_run
from .prune import prune_run, save_pruned
from .report import report_run
from .robust import robust_run
from .train import train_run

__all__ = ["EvalSettings", "analyse_run", "demo", "dissect_run", "evaluate_run", "predictability_run", "prune_run",
           "report_run", "robust_run", "save_pruned", "train_run"]
