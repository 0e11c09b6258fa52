"""Drawing primitives: pixel and face coordinates, soft-edged shapes, colours, batches and views.

Shapes are signed distance fields on the pixel grid (negative inside), turned into a soft
coverage with a one-pixel ramp and alpha-blended into float32 images. Painters (features.py) see
one :class:`_View` at a time: only the images and the box of pixels their feature can touch.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .prior import GEOMETRY, Arrays

Num = float | np.ndarray  # a constant, or per-image values shaped (B, 1, 1) to broadcast
Box = tuple[float, float, float, float]  # x0, x1, y0, y1 in face coordinates


# ----------------------------------------------------------------------------- coordinates


def _canvas(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Canvas coordinates of the pixel centres in [-1, 1], x to the right (1, 1, S), y down (1, S, 1)."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    return t[None, None, :], t[None, :, None]


def _face_coords(g: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face-local coordinates (B, S, S) of every pixel centre, and the scale (B, 1, 1)."""
    x, y = _canvas(size)
    cx, cy, s, a = (g[:, GEOMETRY.index(k), None, None] for k in ("cx", "cy", "scale", "angle"))
    dx, dy = x - cx, y - cy
    cos, sin = np.cos(a), np.sin(a)
    X = (cos * dx + sin * dy) / s
    Y = (-sin * dx + cos * dy) / s
    return X, Y, s


def _window(g: np.ndarray, size: int, box: Box) -> tuple[slice, slice]:
    """Pixel rows and columns covering a face-coordinate box in every image of the batch."""
    x0, x1, y0, y1 = box
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float32)
    cx, cy, s, a = (g[:, GEOMETRY.index(k), None] for k in ("cx", "cy", "scale", "angle"))
    cos, sin = np.cos(a), np.sin(a)
    # inverse of _face_coords: face coordinates back to the canvas
    px = cx + s * (cos * corners[:, 0] - sin * corners[:, 1])
    py = cy + s * (sin * corners[:, 0] + cos * corners[:, 1])

    def span(v: np.ndarray) -> slice:
        lo = int(np.floor((v.min() + 1) / 2 * size - 0.5)) - 1
        hi = int(np.ceil((v.max() + 1) / 2 * size - 0.5)) + 2
        return slice(min(max(lo, 0), size), min(max(hi, 0), size))

    return span(py), span(px)


def _col(v: np.ndarray) -> np.ndarray:
    """Per-image scalar (B,) -> (B, 1, 1), to broadcast over the pixel grid."""
    return v[:, None, None]


# ----------------------------------------------------------------------------- shapes


def _cov(d: np.ndarray, pw: np.ndarray) -> np.ndarray:
    """Soft coverage of a signed distance field: 1 inside, 0 outside, a one-pixel ramp between."""
    return np.clip(0.5 - d / pw, 0.0, 1.0)


def _ellipse(X: np.ndarray, Y: np.ndarray, x0: Num, y0: Num, a: Num, b: Num) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse.

    Outside, the value divided by its gradient's length (accurate along both axes, so thin
    ellipses do not bleed along their long axis); inside, the cheap radial form.
    """
    u, v = (X - x0) / a, (Y - y0) / b
    k0 = np.sqrt(u * u + v * v)
    k1 = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    return np.where(k0 < 1, (k0 - 1) * np.minimum(a, b), k0 * (k0 - 1) / np.maximum(k1, 1e-6))


def _box(X: np.ndarray, Y: np.ndarray, x0: Num, y0: Num, hw: Num, hh: Num) -> np.ndarray:
    """Signed (Chebyshev) distance to an axis-aligned box of half sizes hw, hh."""
    return np.maximum(np.abs(X - x0) - hw, np.abs(Y - y0) - hh)


def _segment(X: np.ndarray, Y: np.ndarray, p: tuple[Num, Num], q: tuple[Num, Num],
             thick: float) -> np.ndarray:
    """Signed distance to a thick line segment from point p to point q."""
    px, py = p
    vx, vy = q[0] - px, q[1] - py
    wx, wy = X - px, Y - py
    h = np.clip((wx * vx + wy * vy) / (vx * vx + vy * vy), 0.0, 1.0)
    return np.hypot(wx - h * vx, wy - h * vy) - thick


def _inside(d: np.ndarray) -> np.ndarray:
    return d <= 0


def _in_ellipse(X: np.ndarray, Y: np.ndarray, x0: Num, y0: Num, a: Num, b: Num) -> np.ndarray:
    """Inside test only: regions need no distances, and this is much cheaper than _ellipse."""
    return ((X - x0) / a) ** 2 + ((Y - y0) / b) ** 2 <= 1


def _paint(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Alpha-blend a colour (B, 3) into img (B, 3, h, w) with alpha (B, h, w), in place."""
    step = colour[:, :, None, None] - img
    step *= alpha[:, None]
    img += step


# ----------------------------------------------------------------------------- colours

_HAIR = np.array([[28, 22, 20], [222, 190, 120], [112, 72, 42], [172, 170, 168]], np.float32)
_OTHER_HAIR = np.array([[150, 62, 34], [70, 45, 35], [185, 110, 60]], np.float32)
_LIPSTICK = np.array([[190, 20, 50], [170, 30, 95], [215, 60, 80], [140, 20, 45]], np.float32)
_SHADOW = np.array([[95, 60, 125], [60, 95, 150], [125, 85, 60], [150, 90, 135]], np.float32)
_IRIS = np.array([[70, 45, 30], [60, 100, 140], [80, 110, 70], [40, 30, 25]], np.float32)
_FRAME = np.array([[20, 20, 20], [70, 45, 30], [40, 40, 90], [120, 25, 25]], np.float32)
_SKIN_DARK, _SKIN_MID, _SKIN_LIGHT = (np.array(c, np.float32) for c in
                                      ([92, 60, 42], [198, 148, 112], [236, 196, 166]))
_SKIN_PALE = np.array([240, 222, 212], np.float32)


def _pick(palette: np.ndarray, u: np.ndarray) -> np.ndarray:
    return palette[np.minimum((u * len(palette)).astype(int), len(palette) - 1)]


def _skin(pale: np.ndarray, tone: np.ndarray) -> np.ndarray:
    """Skin colour (B, 3): a dark-to-light ramp; pale skin is lighter and less saturated."""
    t = tone[:, None]
    ramp = np.where(t < 0.5, _SKIN_DARK + (_SKIN_MID - _SKIN_DARK) * (2 * t),
                    _SKIN_MID + (_SKIN_LIGHT - _SKIN_MID) * (2 * t - 1))
    # pale skins vary a little too, so the lightest normal skins come close to them
    pale_col = _SKIN_PALE - 14 * t
    return np.where(pale[:, None], pale_col, ramp).astype(np.float32)


def _hair_colour(a: dict[str, np.ndarray], sc: Arrays) -> np.ndarray:
    base = _pick(_OTHER_HAIR, sc["hair_pick"])
    for k, name in enumerate(["Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair"]):
        base = np.where(a[name][:, None], _HAIR[k], base)
    return np.clip(base + sc["hair_jit"], 0, 255).astype(np.float32)


def _const(rgb: Sequence[float], n: int) -> np.ndarray:
    return np.tile(np.asarray(rgb, np.float32), (n, 1))


# ----------------------------------------------------------------------------- batches and views


class _View:
    """A window of one batch: some images (those a feature is drawn on) and a box of pixels.

    Painters only see a view, so a small feature costs a small part of the grid and a rare
    attribute costs only the images that have it. ``commit`` writes the pixels back.
    """

    def __init__(self, img: np.ndarray, X: np.ndarray, Y: np.ndarray, p: dict[str, np.ndarray],
                 is_: dict[str, np.ndarray], sc: Arrays, put: Callable[[np.ndarray], None] | None):
        self.img, self.X, self.Y, self.p, self.is_, self.sc, self._put = img, X, Y, p, is_, sc, put
        self.n = len(img)
        self.Xa = np.abs(X)  # mirrored x: one primitive draws both eyes, cheeks, brows, ...
        self.ax, self.ay, self.pw = p["face_ax"], p["face_ay"], p["pw"]
        self.eye_y, self.eye_dx, self.mouth_y = p["eye_y"], p["eye_dx"], p["mouth_y"]
        self.skin, self.hair, self.dark_hair = p["skin"], p["hair"], p["dark_hair"]
        self._face: np.ndarray | None = None

    @property
    def face(self) -> np.ndarray:
        """Signed distance to the head outline; the lower half is squarer for men (the jaw cue)."""
        if self._face is None:
            u2, v2 = (self.X / self.ax) ** 2, (self.Y / self.ay) ** 2
            round_ = np.sqrt(u2 + v2)
            # the mean of the 2-norm and the 4-norm: a superellipse between circle and square
            square = 0.5 * (round_ + np.sqrt(np.sqrt(u2 * u2 + v2 * v2)))
            r = np.where((self.Y > 0) & (self.is_["Male"] > 0), square, round_)
            self._face = (r - 1.0) * self.ax
        return self._face

    def cov(self, d: np.ndarray) -> np.ndarray:
        return _cov(d, self.pw)

    def paint(self, alpha: np.ndarray, colour: np.ndarray) -> None:
        _paint(self.img, alpha, colour)

    def commit(self) -> None:
        if self._put is not None:
            self._put(self.img)


class _Batch:
    """Everything one batch needs to draw: coordinates, canvas and per-image parameters.

    ``img`` (B, 3, S, S) float32, the background, is painted in place.
    """

    def __init__(self, a: dict[str, np.ndarray], sc: Arrays, g: np.ndarray, size: int, img: np.ndarray):
        self.a, self.sc, self.g, self.size = a, sc, g, size
        self.X, self.Y, s = _face_coords(g, size)
        self.img = img
        p = {k: _col(g[:, i]) for i, k in enumerate(GEOMETRY)}
        p["pw"] = (2.0 / size) / s  # one pixel in face units: the soft-edge width
        p["skin"] = _skin(a["Pale_Skin"], sc["tone"])
        p["hair"] = _hair_colour(a, sc)
        # eyebrows and beards are a darker shade of the hair colour (the "other" one when bald)
        p["dark_hair"] = p["hair"] * 0.7
        self.p = p
        self.is_ = {k: _col(v.astype(np.float32)) for k, v in a.items()}

    def view(self, box: Box, only: np.ndarray | None) -> _View | None:
        rows, cols = _window(self.g, self.size, box)
        if only is None:
            img = self.img[:, :, rows, cols]  # a view: painting writes through
            return _View(img, self.X[:, rows, cols], self.Y[:, rows, cols], self.p, self.is_, self.sc, None)
        idx = np.flatnonzero(only)
        if len(idx) == 0:
            return None

        def put(pixels: np.ndarray) -> None:
            self.img[idx, :, rows, cols] = pixels

        pick = lambda d: {k: v[idx] for k, v in d.items()}  # noqa: E731
        return _View(self.img[idx, :, rows, cols], self.X[idx, rows, cols], self.Y[idx, rows, cols],
                     pick(self.p), pick(self.is_), pick(self.sc), put)
