"""``hpnet demo``: the whole pipeline on synthetic faces, each step timed."""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from .. import checks
from ..checkpoint import RUN_FILE
from ..data import DataSpec
from ..errors import HPNetError
from ..io import check_output
from ..ops.pruning import CurveSettings, PruneSettings, ScanSettings
from ..report.text import format_table
from ..study import StudySettings
from ..train import TrainConfig
from .analyse import analyse_run
from .dissect import dissect_run
from .evaluate import evaluate_run
from .predictability import predictability_run
from .prune import prune_run
from .report import report_run
from .robust import robust_run
from .study import study_create
from .train import train_run

DEMO_MODEL = {"backbone": "strided", "widths": (16, 32, 64, 64)}
# The demo's protocol is one where the networks have converged enough to learn their small shape
# cues (the mouth), so that Fig. 4's Smiling / Mouth_Slightly_Open story can show. Synthetic faces
# learn in steps (colours first, the mouth later). Measured on 8,000 images (majority baseline
# 73.97%; Smiling 51.5%, Mouth_Slightly_Open 58.1%), lr 1e-2, batch 32:
#   64x64, 5 epochs: 85.7% (Smiling 54.7%, Mouth_Slightly_Open 59.5%: not learned);
#   64x64, 12 epochs: 93.9% (87.4%, 94.4%) but 2.4x the time;
#   48x48, 6 epochs: 88.8% (71.6%, 80.7%); 48x48, 8 epochs: 90.5% (77.4%, 84.5%);
#   40x40, 8 epochs: 90.8% (74.7%, 81.7%).
# 48x48 and 8 epochs learn both mouth attributes 20+ points above their majority baseline, at 0.56x
# the pixels of 64x64 (so that the three networks of the study train within the five minutes), with
# features of 6 x 6 positions for the dissection (40x40: 5 x 5).
DEMO_SIZE, DEMO_EPOCHS = 48, 8
DEMO_TRAIN = {"lr": 1e-2, "batch_size": 32}
# The demo's pruning curves: 9 points (every 8 of the 64 channels) instead of 17, correlations
# from 1,000 training images, reconstruction fitted on 500: 29 s instead of 62 s with the
# defaults (measured at 64x64, 5 epochs: at 32 channels pruned, semantic 84.93% vs random 84.70%;
# the defaults: 84.88% vs 84.70%).
DEMO_SCAN = {"corr_images": 1000}
DEMO_CURVES = {"grid": list(range(0, 65, 8)), "fit_images": 500}
# The recommended head for a network people can predict (README, "Head families"), trained with the
# same budget for the study that compares it with the paper head and the plain CNN.
DEMO_CHANNEL = {"head": "channel"}
DEMO_CHANNEL_L1 = 2e-4


def demo(out: str | Path = "runs/demo", images: int = 8000, image_size: int = DEMO_SIZE, epochs: int = DEMO_EPOCHS,
         progress: bool = True) -> Path:
    """train -> eval -> analyse -> dissect -> prune -> robust -> predictability -> report on
    synthetic faces, then the networks of a study (the paper head, its plain CNN, the channel head at
    L1 2e-4 in ``out/channel``) and the study of them (``out/study``). Returns the report's path.

    The default fits in five minutes on a 2-core CPU: the strided backbone (the paper's extractor
    never downsamples and is about 15x slower), 25 attributes, 8,000 training images at 48x48, 8
    epochs of Adam at lr 1e-2, batch 32 (DEMO_TRAIN); the plain-CNN baseline of the predictability
    step and the channel head get the same budget.
    """
    out = check_output(checks.path(out, "--out"), "--out", folder=True)
    if out.exists() and any(out.iterdir()):
        if not (out / RUN_FILE).is_file():  # the demo replaces its own run folders, nothing else
            raise HPNetError(f"--out {out}: exists and holds no run; the demo replaces only a run folder "
                             f"(give another --out)")
        shutil.rmtree(out)  # a fresh run each time
    spec = DataSpec(dataset="synthetic", image_size=image_size, max_images=images)
    steps = [
        ("train", lambda: train_run(out, spec, DEMO_MODEL, TrainConfig(epochs=epochs, **DEMO_TRAIN),
                                    progress=progress)),
        ("eval", lambda: print(format_table(evaluate_run(out, progress=progress)))),
        ("analyse", lambda: analyse_run(out, progress=progress)),
        ("dissect", lambda: dissect_run(out, progress=progress)),
        ("prune", lambda: prune_run(out, PruneSettings(scan=ScanSettings(**DEMO_SCAN),
                                                       curves=CurveSettings(**DEMO_CURVES)), progress=progress)),
        ("robust", lambda: robust_run(out, progress=progress)),
        ("predictability", lambda: predictability_run(out, progress=progress)),
        ("train the channel head", lambda: train_run(out / "channel", spec, {**DEMO_MODEL, **DEMO_CHANNEL}, TrainConfig(
            epochs=epochs, l1_lambda=DEMO_CHANNEL_L1, **DEMO_TRAIN), progress=progress)),
        ("study", lambda: study_create(out / "study", StudySettings(
            networks=[str(out), str(out / "plain"), str(out / "channel")]), progress=progress)),
    ]
    start = time.perf_counter()
    for name, step in steps:
        print(f"== {name}", flush=True)
        t = time.perf_counter()
        step()
        print(f"== {name} took {time.perf_counter() - t:.0f} s", flush=True)
    report = report_run(out)
    print(f"report: {report} (demo took {time.perf_counter() - start:.0f} s)")
    hpnet = Path(sys.executable).parent / "hpnet"
    print(f"to look at the model, perturb it and predict the effect yourself: "
          f"{hpnet} serve {out}  (then open http://127.0.0.1:8000/)")
    print(f"to run the study of its three networks with people: {hpnet} study serve {out / 'study'}  and, "
          f"for links to send, {hpnet} study invite {out / 'study'} -n 20")
    return report
