"""Face parts of aligned real faces, placed from five landmarks (eyes, nose, mouth corners).

Each image's landmarks define a face frame: its origin midway between the eyes, its x axis along the
eye line, its unit the distance d between the eyes, its y axis pointing down the face. Every part
is a box or an ellipse in that frame (:data:`LAYOUT`), with proportions of an average adult face:
eyes at (-0.5, 0) and (0.5, 0), the nose tip near (0, 0.65), the mouth corners near (+-0.45, 1.05)
(the mean positions of aligned CelebA in these units: see :mod:`hpnet.data.landmarks`). Brows sit
0.3 d above the eyes, the chin about 0.75 d below the mouth, the face is 2 d wide. The parts are a
template, not a segmentation: hair, ears and neck vary far more than the frame knows, and hat and
glasses are not placed. Like the synthetic parts, every pixel belongs to the part placed last on it.
"""
from __future__ import annotations

import numpy as np
import torch

from .parts import PARTS, coverage, supersampling

LAYOUT_PARTS: tuple[str, ...] = tuple(p for p in PARTS if p not in ("glasses", "hat"))


def _frame(landmarks: np.ndarray, size: int, sub: int) -> dict[str, np.ndarray]:
    """Face-frame coordinates (n, S*sub, S*sub) of the grid points, and the landmarks in the frame."""
    le, re, nose, lm, rm = (landmarks[:, i, :].astype(np.float64) for i in range(5))
    origin = (le + re) / 2
    axis = re - le
    d = np.maximum(np.hypot(axis[:, 0], axis[:, 1]), 1e-6)
    ex = axis / d[:, None]
    ey = np.stack([-ex[:, 1], ex[:, 0]], axis=1)          # x right, y down: the eye line turned a quarter
    t = (np.arange(size * sub) + 0.5) / (size * sub)      # grid points in [0, 1], like the landmarks
    px, py = t[None, None, :] - origin[:, 0, None, None], t[None, :, None] - origin[:, 1, None, None]

    def to_frame(x, y):
        return ((x * ex[:, 0, None, None] + y * ex[:, 1, None, None]) / d[:, None, None],
                (x * ey[:, 0, None, None] + y * ey[:, 1, None, None]) / d[:, None, None])

    u, v = to_frame(px, py)

    def point(p):
        pu, pv = to_frame((p - origin)[:, 0, None, None], (p - origin)[:, 1, None, None])
        return pu, pv

    nu, nv = point(nose)
    mu, mv = point((lm + rm) / 2)
    mw = np.hypot(*(rm - lm).T)[:, None, None] / d[:, None, None] / 2
    return {"u": u, "v": v, "nu": nu, "nv": nv, "mu": mu, "mv": mv, "mw": mw}


def _ellipse(u, v, cu, cv, a, b) -> np.ndarray:
    return ((u - cu) / a) ** 2 + ((v - cv) / b) ** 2 <= 1


def _box(u, v, cu, cv, hu, hv) -> np.ndarray:
    return (np.abs(u - cu) <= hu) & (np.abs(v - cv) <= hv)


def _face(f) -> np.ndarray:
    return _ellipse(f["u"], f["v"], 0, 0.35, 1.0, 1.45)


# back to front, in the face frame (units of the eye distance)
LAYOUT = [
    ("neck", lambda f: (np.abs(f["u"] - f["mu"]) <= 0.75) & (f["v"] >= f["mv"] + 0.7)),
    ("hair", lambda f: _ellipse(f["u"], f["v"], 0, 0.15, 1.45, 1.95) & (f["v"] <= 1.0)),
    ("ears", lambda f: _ellipse(np.abs(f["u"]), f["v"], 1.05, 0.45, 0.17, 0.32)),
    ("face", _face),
    ("forehead", lambda f: _box(f["u"], f["v"], 0, -0.7, 0.8, 0.28) & _face(f)),
    ("cheeks", lambda f: _ellipse(np.abs(f["u"]), f["v"], 0.62, 0.62, 0.3, 0.3) & _face(f)),
    ("chin", lambda f: _ellipse(f["u"], f["v"], f["mu"], f["mv"] + 0.5, 0.55, 0.3) & _face(f)),
    ("nose", lambda f: (np.abs(f["u"] - f["nu"]) <= 0.25) & (f["v"] >= 0.2) & (f["v"] <= f["nv"] + 0.15)),
    ("mouth", lambda f: _box(f["u"], f["v"], f["mu"], f["mv"], f["mw"] + 0.15, 0.22)),
    ("brows", lambda f: _box(np.abs(f["u"]), f["v"], 0.5, -0.3, 0.32, 0.12)),
    ("eyes", lambda f: _box(np.abs(f["u"]), f["v"], 0.5, 0.0, 0.28, 0.14)),
]


def layout_parts(landmarks: torch.Tensor | np.ndarray, size: int) -> torch.Tensor:
    """float32 (n, P, S, S) part shares (P = :data:`LAYOUT_PARTS`) of S x S images whose five landmarks
    (n, 5, 2) are given as (x, y) in [0, 1] of the image (x right, y down): left eye, right eye, nose,
    left and right mouth corner."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    sub = supersampling(size)
    out = np.zeros((len(points), len(LAYOUT_PARTS), size, size), np.float32)
    step = max(1, 2_000_000 // (size * sub) ** 2)
    for start in range(0, len(points), step):
        frame = _frame(points[start:start + step], size, sub)
        labels = np.zeros(frame["u"].shape, np.int8)
        for part, region in LAYOUT:
            labels[region(frame)] = LAYOUT_PARTS.index(part)
        out[start:start + step] = coverage(labels, sub, len(LAYOUT_PARTS))
    return torch.from_numpy(out)
