"""``hpnet serve`` and ``hpnet hitl-score``: the page where people predict, and their score."""
from __future__ import annotations

import time
from pathlib import Path

from ..errors import HPNetError
from ..hitl import Workbench
from ..hitl.app import allowed_hosts, create_app
from ..predictability.human import HITL_DIR, LOG_FILE, score_trial_log
from ..results import TrialScoreResult
from ..run import Run


def serve_run(run: str | Path | Run, host: str = "127.0.0.1", port: int = 8000, images: int = 256,
              progress: bool = True, ready=print) -> None:
    """Serve the page for ``run`` at http://host:port/ until interrupted.

    The run's network (and its plain-CNN baseline in RUN/plain) is loaded and the features of the
    first ``images`` evaluation images cached; trials are logged to RUN/hitl/trials.jsonl. Port 0
    takes a free port; ``ready`` is called with the line that gives the address once it listens.
    """
    from werkzeug.serving import make_server

    start = time.perf_counter()
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise HPNetError(f"--port must be in 0..65535, got {port!r}")
    run = Run.of(run)
    bench = Workbench.from_run(run, images=images, progress=progress)
    app = create_app(bench, host, port)
    try:
        server = make_server(host, port, app, threaded=True)
    except (OSError, SystemExit) as e:
        raise HPNetError(f"cannot listen on {host}:{port} ({e})") from None
    app.config["HPNET_HOSTS"] = allowed_hosts(host, server.server_port)
    ready(f"serving {run.path} at http://{host}:{server.server_port}/ ({bench.images.shape[0]} images, "
          f"networks {', '.join(bench.networks)}; loaded in {time.perf_counter() - start:.1f} s; Ctrl-C stops)")
    try:
        server.serve_forever()
    finally:
        server.server_close()


def hitl_score_run(run: str | Path | Run, n_boot: int = 1000, seed: int = 0) -> TrialScoreResult:
    """The score of the trials in RUN/hitl/trials.jsonl, written to RUN/hitl/score.json (atomically)."""
    run = Run.of(run)
    log = run.path / HITL_DIR / LOG_FILE
    if not log.is_file():
        raise HPNetError(f"{log}: no trials yet (start `hpnet serve {run.path}` and predict)")
    result = score_trial_log(log, n_boot, seed)
    run.write(result)
    return result
