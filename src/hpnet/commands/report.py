"""``hpnet report``: the run's one-page HTML report."""
from __future__ import annotations

from pathlib import Path

from ..report.html import write_report
from ..report.study import write_study_report
from ..run import Run
from ..study.store import DB_FILE


def report_run(run: str | Path | Run, out: str | Path | None = None) -> Path:
    """Write RUN/report.html (or ``out``) from every result in the run folder; returns its path.

    It writes nothing else and computes no result: a people's score missing or older than the
    trial log is named in the page with the command that makes it (``hpnet hitl-score RUN``). A
    study folder (one holding study.sqlite) gets the study's report from its score.json.
    """
    if not isinstance(run, Run) and (Path(run) / DB_FILE).is_file():
        return write_study_report(run, out)
    return write_report(Run.of(run).path, out)
