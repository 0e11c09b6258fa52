"""The face parts of synthetic faces, from the generator's geometry: where each part is drawn.

Every pixel gets the part drawn last on it (the table below runs back to front, as the painters of
:data:`.features.FEATURES` do), so the parts are a partition of the image. Their shapes are the
painters' own (the head outline with its squarer jaw for Male, the hair behind the head long or short,
the hair cap under its hairline) or the evidence regions of :mod:`.features` that the painters draw
into (eyes, brows, nose, mouth, cheeks, forehead, chin). Parts that are drawn on some faces only
(hat, glasses, beard, bangs, sideburns, earrings, no hair when Bald) follow the flags of
:data:`PART_INFO`, which :class:`~hpnet.data.synthetic.SyntheticFaces` keeps beside the geometry.

==========  =================================================================================
background  everything not covered below
neck        neck and shoulders (the clothes)
hair        hair behind the head, the hair cap, bangs and sideburns (not on a bald head)
ears        ears and earrings
face        the rest of the head outline (for a bald head, the scalp too)
forehead    forehead box of the Bangs evidence region, inside the face
cheeks      the Rosy_Cheeks circles, inside the face
chin        the Goatee region inside the face, and a full beard or goatee where drawn
nose        the Big_Nose box
mouth       the Smiling / Mouth_Slightly_Open box (lips, teeth, most of a mustache)
brows       the eyebrow boxes
glasses     lenses, frame, bridge and arms, where drawn (the eyes behind them stay eyes)
eyes        the eye boxes
hat         crown and brim, where drawn
==========  =================================================================================
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..parts import PARTS, coverage, supersampling
from .draw import _box, _col, _face_coords, _in_ellipse, _inside
from .features import _r_brows, _r_cheeks, _r_chin, _r_eyes, _r_forehead, _r_mouth, _r_nose
from .prior import GEOMETRY, Arrays

# per-image flags the parts need besides the geometry (columns of SyntheticFaces.part_info)
PART_INFO: list[str] = ["Bald", "Bangs", "Wearing_Hat", "Eyeglasses", "No_Beard", "Goatee", "Wearing_Earrings",
                        "Sideburns", "Male", "long_hair", "hairline"]
_BATCH_POINTS = 2_000_000  # bounds memory: the label grid of one batch


def _part_info(attrs: dict[str, np.ndarray], scene: Arrays) -> np.ndarray:
    """(n, len(PART_INFO)) float32: the drawn attributes, whether the hair is long (as _hair_back
    decides) and the hairline's shift (as _hair_cap draws it)."""
    male = attrs["Male"]
    long_hair = scene["long_hair"] < np.where(male, 0.1, 0.8)
    values = {**{k: attrs[k] for k in PART_INFO[:9]}, "long_hair": long_hair, "hairline": scene["hairline"]}
    return np.stack([np.asarray(values[k], np.float32) for k in PART_INFO], axis=1)


def _part_masks(geometry: np.ndarray, info: np.ndarray, size: int) -> np.ndarray:
    """float32 (n, P, S, S): the share of each pixel that each part of :data:`PARTS` covers."""
    sub = supersampling(size)
    fine = size * sub
    step = max(1, _BATCH_POINTS // (fine * fine))
    out = np.zeros((len(geometry), len(PARTS), size, size), np.float32)
    for start in range(0, len(geometry), step):
        g, f = geometry[start:start + step], info[start:start + step]
        X, Y, _ = _face_coords(g, fine)
        geo = {k: _col(g[:, i]) for i, k in enumerate(GEOMETRY)}
        flags = {k: _col(f[:, i]) for i, k in enumerate(PART_INFO)}
        flags["face_r"] = _head_radius(X, Y, geo, flags)
        flags["face"] = flags["face_r"] <= 1.0                    # several parts stay inside it
        labels = np.zeros(X.shape, np.int8)
        for part, region in _TABLE:
            labels[region(X, Y, geo, flags)] = PARTS.index(part)
        out[start:start + step] = coverage(labels, sub, len(PARTS))
    return out


Part = Callable[[np.ndarray, np.ndarray, Arrays, Arrays], np.ndarray]  # (X, Y, geometry, flags) -> bool


def _face(X, Y, g, f) -> np.ndarray:
    return f["face"]


def _head_radius(X, Y, g, f) -> np.ndarray:
    """The head outline as _View.face draws it (the lower half squarer for Male), as a radius: 1 on the
    outline, (radius - 1) * face_ax the signed distance to it."""
    u2, v2 = (X / g["face_ax"]) ** 2, (Y / g["face_ay"]) ** 2
    round_ = np.sqrt(u2 + v2)
    square = 0.5 * (round_ + np.sqrt(np.sqrt(u2 * u2 + v2 * v2)))
    return np.where((Y > 0) & (f["Male"] > 0), square, round_)


def _neck(X, Y, g, f) -> np.ndarray:
    return _inside(_box(X, Y, 0, 0.7, 0.2 + 0.04 * f["Male"], 0.3)) | _in_ellipse(X, Y, 0, 1.25, 0.85, 0.48)


def _hair_back(X, Y, g, f) -> np.ndarray:
    ax = g["face_ax"]
    long_ = _in_ellipse(X, Y, 0, 0.1, ax + 0.14, 0.78) & (Y < 0.75)
    short = _in_ellipse(X, Y, 0, -0.06, ax + 0.045, 0.62)
    return (f["Bald"] == 0) & np.where(f["long_hair"] > 0, long_, short)


def _ears(X, Y, g, f) -> np.ndarray:
    return _in_ellipse(np.abs(X), Y, g["face_ax"], 0.0, 0.06, 0.1)


def _earrings(X, Y, g, f) -> np.ndarray:
    return (f["Wearing_Earrings"] > 0) & _in_ellipse(np.abs(X), Y, g["face_ax"] + 0.01, 0.165, 0.062, 0.062)


def _inside_face(region: Callable) -> Part:
    return lambda X, Y, g, f: region(X, Y, g) & f["face"]


def _chin(X, Y, g, f) -> np.ndarray:
    """The chin, and a beard as _beard draws it (a little beyond the head outline)."""
    beyond = (f["face_r"] - 1.0) * g["face_ax"]                  # distance outside the head outline
    beard = (f["No_Beard"] == 0) & (f["Goatee"] == 0) & (Y > 0.22 - 0.25 * (X / g["face_ax"]) ** 2) & (beyond <= 0.015)
    goatee = (f["Goatee"] > 0) & _in_ellipse(X, Y, 0, g["mouth_y"] + 0.15, 0.12, 0.16) & (beyond <= 0.03)
    return (f["face"] & _r_chin(X, Y, g)) | beard | goatee


def _plain(region: Callable) -> Part:
    return lambda X, Y, g, f: region(X, Y, g)


def _sideburns(X, Y, g, f) -> np.ndarray:
    strip = _inside(_box(np.abs(X), Y, g["face_ax"] - 0.055, g["eye_y"] + 0.07, 0.055, 0.19))
    return (f["Sideburns"] > 0) & strip & f["face"]


def _hair_front(X, Y, g, f) -> np.ndarray:
    """The hair cap under its hairline, and bangs down to their wavy edge."""
    ax, ay, ey = g["face_ax"], g["face_ay"], g["eye_y"]
    cap = _in_ellipse(X, Y, 0, -0.04, ax + 0.04, ay + 0.025) & (Y < ey - 0.29 + f["hairline"] + 0.18 * (X / ax) ** 2)
    bangs = (f["Bangs"] > 0) & _in_ellipse(X, Y, 0, -0.04, ax + 0.02, ay + 0.02) & (Y < ey - 0.138)
    return (f["Bald"] == 0) & (cap | bangs)


def _glasses(X, Y, g, f) -> np.ndarray:
    Xa, ex, ey = np.abs(X), g["eye_dx"], g["eye_y"]
    rims = _in_ellipse(Xa, Y, ex, ey, 0.14, 0.115)
    bridge = (Xa < ex) & (np.abs(Y - ey) < 0.03)
    arms = (Xa > ex) & (Xa < g["face_ax"] + 0.04) & (Y > ey - 0.045) & (Y < ey + 0.03)
    return (f["Eyeglasses"] > 0) & (rims | bridge | arms)


def _hat(X, Y, g, f) -> np.ndarray:
    top = g["eye_y"] - 0.36
    crown = _in_ellipse(X, Y, 0, top, g["face_ax"] + 0.05, 0.42) & (Y < top)
    brim = _in_ellipse(X, Y, 0, top, g["face_ax"] + 0.2, 0.055)
    return (f["Wearing_Hat"] > 0) & (crown | brim)


# back to front, as the painters draw (a part may appear twice: hair behind the head and in front)
_TABLE: list[tuple[str, Part]] = [
    ("neck", _neck), ("hair", _hair_back), ("ears", _ears), ("face", _face),
    ("forehead", _inside_face(_r_forehead)), ("cheeks", _inside_face(_r_cheeks)), ("chin", _chin),
    ("nose", _plain(_r_nose)), ("mouth", _plain(_r_mouth)), ("brows", _plain(_r_brows)),
    ("hair", _sideburns), ("hair", _hair_front), ("ears", _earrings), ("glasses", _glasses),
    ("eyes", _plain(_r_eyes)), ("hat", _hat),
]
