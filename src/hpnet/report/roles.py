"""Channels named in the figures by their role, the face part where each fires ("12 mouth"), from the
run's dissection (RUN/dissect.json, :class:`~hpnet.results.DissectResult`); the figures are drawn as
before when the roles are unknown. The part colours are those of the page (hitl/static/roles.js).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.patches import Patch

from ..results import DissectResult
from ..run import Run

NONE = "none"
PART_COLOURS = {
    "background": "#9e9e9e", "neck": "#aec7e8", "hair": "#6b3e26", "ears": "#e377c2", "face": "#f4c7a1",
    "forehead": "#dbdb8d", "cheeks": "#ff9896", "chin": "#bcbd22", "nose": "#ff7f0e", "mouth": "#d62728",
    "brows": "#2ca02c", "glasses": "#17becf", "eyes": "#1f77b4", "hat": "#9467bd",
}
NO_PART = "#e6e6e6"


def run_roles(run: Run, channels: int) -> list[str] | None:
    """Each channel's part or "none" from RUN/dissect.json; None without it or when it names another
    number of channels (a dissection of another network)."""
    result = run.read(DissectResult)
    if result is None or len(result.channels) != channels:
        return None
    return [c["part"] for c in sorted(result.channels, key=lambda c: c["channel"])]


def channel_label(c: int, roles: Sequence[str] | None, prefix: str = "") -> str:
    """"12 mouth" (with ``prefix``: "ch 12 mouth"); the id alone for "none" or unknown roles."""
    role = roles[c] if roles is not None else NONE
    return f"{prefix}{c}" + (f" {role}" if role != NONE else "")


def part_colour(part: str) -> tuple[float, float, float]:
    return to_rgb(NO_PART if part == NONE else PART_COLOURS.get(part, "#7f7f7f"))


def part_strip(ax, roles: Sequence[str], order: Sequence[int]) -> None:
    """A row of part colours just above ``ax``, one cell per column (channels in ``order``)."""
    strip = ax.inset_axes((0, 1.01, 1, 0.025))
    strip.imshow(np.array([[part_colour(roles[c]) for c in order]]), aspect="auto", interpolation="nearest")
    strip.set_axis_off()


def part_legend(fig, roles: Sequence[str], **kwargs) -> None:
    """A legend of the parts the channels have ("none": no one part), each with its channel count."""
    parts = [p for p in [*PART_COLOURS, NONE] if p in roles]
    handles = [Patch(color=part_colour(p), label=f"{'no one part' if p == NONE else p} ({list(roles).count(p)})")
               for p in parts]
    fig.legend(handles=handles, fontsize=7.5, ncol=min(len(handles), 8), frameon=False, **kwargs)
