"""Small HTML pieces the report's sections are made of (escaped text, tables, embedded PNGs)."""
from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from pathlib import Path

from matplotlib.figure import Figure

from .figures import png_base64


def table(headers: Sequence[str], rows: Sequence[Sequence], numeric: Sequence[bool] | None = None,
          row_classes: Sequence[str] | None = None) -> str:
    """An HTML table; ``numeric`` columns are right-aligned; a cell may be (text, css class)."""
    numeric = numeric or [False] * len(headers)
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        cells = "".join(_cell(v, numeric[j] if j < len(numeric) else False) for j, v in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cell(v, numeric: bool) -> str:
    if isinstance(v, tuple):  # (text, css class)
        return f'<td class="{v[1]}">{escape(str(v[0]))}</td>'
    return f'<td class="num">{escape(str(v))}</td>' if numeric else f"<td>{escape(str(v))}</td>"


def img(b64: str, alt: str) -> str:
    return f'<img src="data:image/png;base64,{b64}" alt="{escape(alt)}">'


def figure(fig: Figure, alt: str) -> str:
    """A figure embedded as a base64 PNG (the figure is closed)."""
    return img(png_base64(fig), alt)


def png_file(path: Path, alt: str) -> str:
    return img(base64.b64encode(path.read_bytes()).decode("ascii"), alt)


def note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def missing(file: str, command: str) -> str:
    """The note shown where a result file is not there yet: which command makes it."""
    return note(f"<code>{escape(file)}</code> is not in the run folder yet: run "
                f"<code>{escape(command)}</code> to make it.")


def _scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def value(v) -> str | None:
    """A short text for a setting: numbers, strings, short lists, flat dicts; None to leave it out."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)) and all(_scalar(x) for x in v):
        shown = ", ".join(value(x) for x in v[:12])
        return shown if len(v) <= 12 else f"{len(v)} items: {shown}, ..."
    if isinstance(v, dict) and all(_scalar(x) for x in v.values()):
        return ", ".join(f"{k}: {value(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple, dict)):
        return None
    return "-" if v is None else str(v)


def kv_table(items: dict, skip: Sequence[str] = ()) -> str:
    """The settings of a result: scalars, short lists and flat dicts (nested data left out)."""
    rows = [(k, value(v)) for k, v in items.items() if k not in skip]
    rows = [r for r in rows if r[1] is not None]
    return table(["setting", "value"], rows) if rows else ""
