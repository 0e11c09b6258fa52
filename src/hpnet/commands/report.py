"""``hpnet report``: the run's one-page HTML report."""
from __future__ import annotations

from pathlib import Path

from ..report.html import write_report
from ..run import Run


def report_run(run: str | Path | Run, out: str | Path | None = None) -> Path:
    """Write RUN/report.html (or ``out``) from every result in the run folder; returns its path.

    It writes nothing else and computes no result: a people's score missing or older than the
    trial log is named in the page with the command that makes it (``hpnet hitl-score RUN``).
    """
    return write_report(Run.of(run).path, out)
