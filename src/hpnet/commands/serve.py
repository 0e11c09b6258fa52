"""``hpnet serve`` and ``hpnet hitl-score``: the page where people predict, and their score."""
from __future__ import annotations

import contextlib
import errno
import io
import socket
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
    check_listen(host, port)                  # before the seconds of loading
    bench = Workbench.from_run(run, images=images, progress=progress)
    app = create_app(bench, host, port)
    try:
        with contextlib.redirect_stderr(io.StringIO()) as said:     # Werkzeug prints its own lines, then exits
            server = make_server(host, port, app, threaded=True)
    except (OSError, SystemExit) as e:
        why = " ".join(said.getvalue().split()[:12]) or str(e)
        raise HPNetError(f"cannot listen on {host}:{port} ({why})") from None
    app.config["HPNET_HOSTS"] = allowed_hosts(host, server.server_port)
    ready(f"serving {run.path} at http://{host}:{server.server_port}/ ({bench.images.shape[0]} images, "
          f"networks {', '.join(bench.networks)}; loaded in {time.perf_counter() - start:.1f} s; Ctrl-C stops)")
    try:
        server.serve_forever()
    finally:
        server.server_close()


def check_listen(host: str, port: int) -> None:
    """One line when ``host:port`` cannot be listened on (taken by another program, no such address)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)       # as the server will
            s.bind((host, port))
    except OSError as e:
        why = "the port is in use by another program: stop it, or give another --port (0 takes a free one)" \
            if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        raise HPNetError(f"cannot listen on {host}:{port} ({why})") from None


def hitl_score_run(run: str | Path | Run, n_boot: int = 1000, seed: int = 0) -> TrialScoreResult:
    """The score of the trials in RUN/hitl/trials.jsonl, written to RUN/hitl/score.json (atomically)."""
    run = Run.of(run)
    log = run.path / HITL_DIR / LOG_FILE
    if not log.is_file():
        raise HPNetError(f"{log}: no trials yet (start `hpnet serve {run.path}` and predict)")
    result = score_trial_log(log, n_boot, seed)
    run.write(result)
    return result
