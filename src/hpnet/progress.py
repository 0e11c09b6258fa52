"""Progress bars on a terminal, and nothing of them in logs.

Long passes show a tqdm bar on stderr when stderr is a terminal. When it is not (CI, a log file,
``nohup``, ``make demo > log``), a bar would write thousands of carriage-return updates: there it
is silent, and what reports progress in words (a line per training epoch, per demo step) does so.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm import tqdm


def on_terminal() -> bool:
    """True when stderr, where bars go, is a terminal."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def bar(iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "img",
        enabled: bool = True) -> tqdm:
    """A tqdm bar when ``enabled`` and on a terminal, else a silent one (same interface)."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not (enabled and on_terminal()),
                leave=False, dynamic_ncols=True)


def write(line: str) -> None:
    """Print a line without breaking a live bar."""
    tqdm.write(line)
