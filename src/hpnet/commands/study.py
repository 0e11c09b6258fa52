"""``hpnet study create | invite | serve | score``: a predictability study with real people."""
from __future__ import annotations

import secrets
import time
from pathlib import Path

from ..errors import HPNetError
from ..io import atomic_write_json, atomic_write_text, check_output
from ..results import StudyScoreResult
from ..study import Study, StudySettings, create_study, score_study
from ..study.score import answers_csv
from .serve import check_listen

LOCAL = ("127.0.0.1", "localhost", "::1")


def study_create(out: str | Path, settings: StudySettings, progress: bool = True) -> Study:
    """Draw the item bank and write the study to ``out`` (see :mod:`hpnet.study.protocol`)."""
    create_study(out, settings, progress)
    return Study(out)


def study_invite(study: str | Path | Study, n: int, base_url: str = "http://127.0.0.1:8000") -> list[str]:
    """``n`` new participants' links, ``BASE/p/TOKEN`` (each printed once: only its hash is stored)."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10_000:
        raise HPNetError(f"-n must be an integer in 1..10000, got {n!r}")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise HPNetError(f"--url must start with http:// or https://, got {base_url!r}")
    study = study if isinstance(study, Study) else Study(study)
    return [f"{base_url.rstrip('/')}/p/{token}" for token in study.invite(n)]


def study_serve(study: str | Path | Study, host: str = "127.0.0.1", port: int = 8000,
                allow_hosts: tuple[str, ...] = (), threads: int = 8, ready=print) -> None:
    """Serve the study on waitress at http://host:port/ until interrupted; ``ready`` gets the lines
    that give the addresses (the admin link among them) once it listens."""
    from waitress import create_server

    from ..study.app import create_study_app
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise HPNetError(f"--port must be in 0..65535, got {port!r}")
    if host not in LOCAL and host not in allow_hosts:
        raise HPNetError(f"--host {host} is reachable from other machines: say so with --allow-host {host} "
                         f"(and the names people will use)")
    study = study if isinstance(study, Study) else Study(study)
    check_listen(host, port)
    admin = secrets.token_urlsafe(24)
    app = create_study_app(study, admin, host, port, tuple(allow_hosts))
    server = create_server(app, host=host, port=port, threads=threads, clear_untrusted_proxy_headers=True)
    bound = server.effective_port
    app.config["HPNET_HOSTS"] |= {f"{name}:{bound}" for name in ("127.0.0.1", "localhost", host, *allow_hosts)}
    start = time.strftime("%H:%M:%S")
    ready(f"serving the study {study.path} at http://{host}:{bound}/ ({len(study.items)} items, networks "
          f"{', '.join(study.networks)}; since {start}; Ctrl-C stops)")
    ready(f"admin (score, answers.csv): http://{host}:{bound}/admin/{admin}/api/score")
    ready(f"invite people: hpnet study invite {study.path} -n 20 --url http://{host}:{bound}")
    try:
        server.run()
    finally:
        server.close()


def study_score(study: str | Path | Study, n_boot: int = 1000, csv: str | Path | None = None,
                seed: int = 0) -> StudyScoreResult:
    """Score the study (see :mod:`hpnet.study.score`), write it to STUDY/score.json, and with ``csv``
    the answers, one row per (answer, attribute)."""
    study = study if isinstance(study, Study) else Study(study)
    if not isinstance(n_boot, int) or isinstance(n_boot, bool) or not 10 <= n_boot <= 100_000:
        raise HPNetError(f"--boot must be an integer in 10..100000, got {n_boot!r}")
    out = check_output(csv, "--csv", folder=False) if csv is not None else None
    result = score_study(study, n_boot=n_boot, seed=seed)
    atomic_write_json(result.to_json(), study.path / StudyScoreResult.FILE)
    if out is not None:
        atomic_write_text(answers_csv(study), out)
    return result
