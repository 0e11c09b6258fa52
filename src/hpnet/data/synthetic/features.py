"""The feature table: each drawn feature's painter, box and images, and the evidence region of
each attribute it shows.

Painters are written in drawing order, each followed by the region function(s) that must agree
with it: a region is the ground truth :meth:`SyntheticFaces.region_masks` reports, so when a
painter's shapes move, its region must move with them. Both work in face coordinates (painters
through a :class:`_View`, regions on the geometry columns), so they agree whatever the pose.
:data:`REGIONS` (attribute -> region) is derived from :data:`FEATURES`, and the import fails
unless every attribute of :data:`ATTRIBUTES` has exactly one region.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .draw import (
    _FRAME,
    _IRIS,
    _LIPSTICK,
    _SHADOW,
    Box,
    _box,
    _col,
    _const,
    _ellipse,
    _in_ellipse,
    _inside,
    _pick,
    _segment,
    _View,
)
from .prior import ATTRIBUTES, Arrays

Painter = Callable[[_View], None]
Region = Callable[[np.ndarray, np.ndarray, Arrays], np.ndarray]  # (X, Y, geometry) -> bool mask
Only = Callable[[dict[str, np.ndarray]], np.ndarray]  # attributes -> bool (n,): the images drawn on


@dataclass(frozen=True)
class Feature:
    """One row of the table: a painter, the face-coordinate box that holds its shapes in every
    image, which images it is drawn on (all if ``only`` is None), and the evidence region of each
    attribute it shows."""

    paint: Painter
    box: Box
    only: Only | None = None
    regions: dict[str, Region] = field(default_factory=dict)


def _has(name: str, value: bool = True) -> Only:
    return lambda a: a[name] == value


def _body(f: _View) -> None:
    """The neck (wider for Male) and the shoulders in the clothes colour."""
    X, Y = f.X, f.Y
    neck_w = 0.2 + 0.04 * f.is_["Male"]
    f.paint(f.cov(_box(X, Y, 0, 0.7, neck_w, 0.3)), f.skin * 0.85)
    f.paint(f.cov(_ellipse(X, Y, 0, 1.25, 0.85, 0.48)), f.sc["cloth"])


def _hair_back(f: _View) -> None:
    """Hair behind the head: long (mostly women) or a thin short outline (mostly men)."""
    X, Y, ax = f.X, f.Y, f.ax
    long_ = _col(f.sc["long_hair"] < np.where(f.is_["Male"][:, 0, 0] > 0, 0.1, 0.8))
    d_long = np.maximum(_ellipse(X, Y, 0, 0.1, ax + 0.14, 0.78), Y - 0.75)
    d_short = _ellipse(X, Y, 0, -0.06, ax + 0.045, 0.62)
    f.paint(f.cov(np.where(long_, d_long, d_short)), f.hair)


def _r_hair(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    """Hair colours: the hair behind the head (drawn here) and the cap above the hairline (_hair_cap)."""
    ax, ay = g["face_ax"], g["face_ay"]
    outer = _in_ellipse(X, Y, 0, 0.1, ax + 0.16, 0.82)
    face_below_hairline = _in_ellipse(X, Y, 0, 0, ax, ay) & (Y > g["eye_y"] - 0.26)
    return outer & ~face_below_hairline & (Y < 0.8)


def _head(f: _View) -> None:
    """Ears and face in the skin colour; Male's face is wider (_geometry) with a squarer jaw (_View.face)."""
    # ears sit under the head outline, their outer half shows
    f.paint(f.cov(_ellipse(f.Xa, f.Y, f.ax, 0.0, 0.06, 0.1)), f.skin * 0.93)
    f.paint(f.cov(f.face), f.skin)


def _r_skin(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    """Pale_Skin: the face and ears (drawn here) and the neck (_body)."""
    ax, ay = g["face_ax"], g["face_ay"]
    face = _in_ellipse(X, Y, 0, 0, ax + 0.03, ay + 0.02)
    ears = _in_ellipse(np.abs(X), Y, ax, 0.0, 0.07, 0.11)
    neck = _inside(_box(X, Y, 0, 0.7, 0.25, 0.3))
    return face | ears | neck


def _r_male(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    """Male: the head outline (width, jaw: drawn here), the hair around it (length: _hair_back)
    and the neck (width: _body)."""
    ax, ay = g["face_ax"], g["face_ay"]
    outline = _in_ellipse(X, Y, 0, 0, ax + 0.08, ay + 0.08) & ~_in_ellipse(X, Y, 0, 0, ax - 0.08, ay - 0.08)
    long_hair = _in_ellipse(X, Y, 0, 0.1, ax + 0.16, 0.82) & (np.abs(X) > ax - 0.08) & (Y < 0.8)
    neck = _inside(_box(X, Y, 0, 0.7, 0.27, 0.3))
    return outline | long_hair | neck


def _age_lines(f: _View) -> None:
    """Not Young: faint forehead lines, smile lines and crow's feet (low contrast on purpose)."""
    X, Y, Xa, ey, ex = f.X, f.Y, f.Xa, f.eye_y, f.eye_dx
    d = np.minimum(_box(X, Y, 0, ey - 0.2, 0.15, 0.008), _box(X, Y, 0, ey - 0.25, 0.13, 0.008))
    d = np.minimum(d, _segment(Xa, Y, (0.08, 0.16), (0.16, f.mouth_y + 0.05), 0.009))
    d = np.minimum(d, _segment(Xa, Y, (ex + 0.09, ey - 0.01), (ex + 0.14, ey + 0.02), 0.008))
    f.paint(f.cov(d) * 0.8, f.skin * 0.6)


def _r_age(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    forehead = _inside(_box(X, Y, 0, g["eye_y"] - 0.225, 0.18, 0.06))
    smile_lines = _inside(_box(np.abs(X), Y, 0.115, (0.16 + g["mouth_y"] + 0.05) / 2, 0.06, 0.13))
    crows = _inside(_box(np.abs(X), Y, g["eye_dx"] + 0.11, g["eye_y"] + 0.005, 0.04, 0.04))
    return forehead | smile_lines | crows


def _cheek_blob(f: _View) -> np.ndarray:
    r2 = (f.Xa - 0.25) ** 2 + (f.Y - 0.13) ** 2
    return np.exp(-r2 / (2 * 0.065 ** 2)) * f.cov(f.face + 0.03)


def _rosy_cheeks(f: _View) -> None:
    f.paint(_cheek_blob(f) * 0.8, _const([210, 65, 75], f.n))


def _r_cheeks(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return (np.abs(X) - 0.25) ** 2 + (Y - 0.13) ** 2 <= 0.13 ** 2


def _makeup(f: _View) -> None:
    """Heavy_Makeup: eye shadow over the upper lids and a light pink blush where rosy cheeks go."""
    f.paint(_cheek_blob(f) * 0.22, _const([225, 130, 140], f.n))
    shadow = _ellipse(f.Xa, f.Y, f.eye_dx, f.eye_y - 0.025, 0.1, 0.055)
    f.paint(f.cov(shadow) * 0.6, _pick(_SHADOW, f.sc["shadow_pick"]))


def _r_makeup(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    """Heavy_Makeup: the blush and the eye shadow (drawn here), and the thicker eyeliner (_eyes)."""
    return _r_cheeks(X, Y, g) | _inside(_box(np.abs(X), Y, g["eye_dx"], g["eye_y"] - 0.015, 0.12, 0.08))


def _eyes(f: _View) -> None:
    """Eye whites (half as high for Narrow_Eyes), eyeliner (thicker with makeup), irises."""
    Xa, Y, ex, ey = f.Xa, f.Y, f.eye_dx, f.eye_y
    makeup = f.is_["Heavy_Makeup"]
    h = 0.042 * (1 - 0.55 * f.is_["Narrow_Eyes"]) * _col(f.sc["eye_h"])
    eye = _ellipse(Xa, Y, ex, ey, 0.075, h)
    liner = np.abs(eye) - (0.004 + 0.008 * makeup)
    f.paint(f.cov(liner) * (0.35 + 0.55 * makeup), f.skin * 0.3)
    white = f.cov(eye)
    f.paint(white, _const([238, 236, 230], f.n))
    gaze = _col(f.sc["gaze"]) * np.sign(f.X)
    iris = f.cov(_ellipse(Xa, Y, ex + gaze, ey, 0.03, 0.03)) * white
    f.paint(iris, _pick(_IRIS, f.sc["iris"]))


def _r_eyes(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _inside(_box(np.abs(X), Y, g["eye_dx"], g["eye_y"], 0.11, 0.06))


def _brows(f: _View) -> None:
    """Bushy_Eyebrows: thickness; Arched_Eyebrows: curvature of the brow line."""
    u = f.Xa - f.eye_dx
    arch = 0.006 + 0.04 * f.is_["Arched_Eyebrows"]
    yb = f.eye_y - 0.11 - arch * (1 - (u / 0.1) ** 2)
    th = (0.013 + 0.025 * f.is_["Bushy_Eyebrows"]) * _col(f.sc["brow_th"])
    d = np.maximum(np.abs(f.Y - yb) - th, np.abs(u) - 0.1)
    f.paint(f.cov(d) * 0.9, f.dark_hair)


def _r_brows(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _inside(_box(np.abs(X), Y, g["eye_dx"], g["eye_y"] - 0.13, 0.125, 0.08))


def _nose(f: _View) -> None:
    """A faint bridge, the nose base (wider for Big_Nose) and two nostrils."""
    X, Xa, Y = f.X, f.Xa, f.Y
    big = f.is_["Big_Nose"]
    f.paint(f.cov(_segment(X, Y, (0.0, 0.0), (0.0, 0.13), 0.008)) * 0.35, f.skin * 0.75)
    w = 0.048 + 0.04 * big
    f.paint(f.cov(_ellipse(X, Y, 0, 0.14, w, 0.03 + 0.01 * big)) * 0.55, f.skin * 0.8)
    nostril = _ellipse(Xa, Y, w * 0.55, 0.155, 0.012 + 0.005 * big, 0.009)
    f.paint(f.cov(nostril) * 0.7, f.skin * 0.45)


def _r_nose(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _inside(_box(X, Y, 0, 0.1, 0.11, 0.1))


def _beard(f: _View) -> None:
    """A Goatee on the chin only, else (not No_Beard) a full beard over jaw and chin."""
    X, Y, face = f.X, f.Y, f.face
    goatee = f.is_["Goatee"]
    d_full = np.maximum(face - 0.015, 0.22 - 0.25 * (X / f.ax) ** 2 - Y)
    d_goatee = np.maximum(_ellipse(X, Y, 0, f.mouth_y + 0.15, 0.12, 0.16), face - 0.03)
    d = np.where(goatee > 0, d_goatee, d_full)
    f.paint(f.cov(d) * _col(f.sc["beard_alpha"]), f.dark_hair)


def _r_lower_face(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    ax, ay = g["face_ax"], g["face_ay"]
    return _in_ellipse(X, Y, 0, 0, ax + 0.05, ay + 0.05) & (Y > 0.2 - 0.25 * (X / ax) ** 2 - 0.03)


def _r_chin(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _in_ellipse(X, Y, 0, g["mouth_y"] + 0.15, 0.15, 0.19)


def _mouth(f: _View) -> None:
    """Lips along a curve (corners up when Smiling), an open dark interior, teeth if both."""
    X, Y, my = f.X, f.Y, f.mouth_y
    smile, open_ = f.is_["Smiling"], f.is_["Mouth_Slightly_Open"]
    w = 0.13 + 0.05 * smile
    q = np.clip((X / w) ** 2, 0, 1)
    yc = my - (0.085 * smile - 0.008) * (q - 0.3)
    th = (0.03 + 0.016 * open_) * np.sqrt(1 - q) + 0.005
    lips = f.cov(np.maximum(np.abs(Y - yc) - th, np.abs(X) - w))
    natural = f.skin * np.float32([0.82, 0.58, 0.58]) + np.float32([25, 0, 5])
    lipstick = _pick(_LIPSTICK, f.sc["lip_pick"])
    f.paint(lips, np.where(f.is_["Wearing_Lipstick"][:, 0], lipstick, natural))
    inner = f.cov(np.maximum(_ellipse(X, Y, 0, my + 0.012, 0.75 * w, 0.045), yc - 0.015 - Y))
    f.paint(inner * open_, _const([60, 20, 25], f.n))
    teeth = inner * f.cov(Y - my - 0.002) * open_ * smile
    f.paint(teeth * 0.9, _const([235, 232, 220], f.n))
    closed = f.cov(np.maximum(np.abs(Y - yc) - 0.006, np.abs(X) - 0.9 * w))
    f.paint(closed * (1 - open_) * 0.7, f.skin * 0.35)


def _r_mouth(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _inside(_box(X, Y, 0, g["mouth_y"] + 0.01, 0.21, 0.1))


def _r_lips(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _inside(_box(X, Y, 0, g["mouth_y"] + 0.01, 0.2, 0.085))


def _mustache(f: _View) -> None:
    y_m = f.mouth_y - 0.09 + 0.025 * (f.X / 0.17) ** 2
    d = np.maximum(np.abs(f.Y - y_m) - 0.038, f.Xa - 0.17)
    f.paint(f.cov(d), f.dark_hair)


def _r_mustache(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _inside(_box(X, Y, 0, g["mouth_y"] - 0.078, 0.19, 0.06))


def _sideburns(f: _View) -> None:
    d = np.maximum(_box(f.Xa, f.Y, f.ax - 0.055, f.eye_y + 0.07, 0.055, 0.19), f.face)
    f.paint(f.cov(d) * 0.9, f.dark_hair)


def _r_sideburns(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _inside(_box(np.abs(X), Y, g["face_ax"] - 0.05, g["eye_y"] + 0.07, 0.08, 0.21))


def _hair_cap(f: _View) -> None:
    """Hair above the hairline, which dips towards the temples (its region: _r_hair)."""
    X, Y, ax = f.X, f.Y, f.ax
    hairline = f.eye_y - 0.29 + _col(f.sc["hairline"]) + 0.18 * (X / ax) ** 2
    cap = np.maximum(_ellipse(X, Y, 0, -0.04, ax + 0.04, f.ay + 0.025), Y - hairline)
    f.paint(f.cov(cap), f.hair)


def _bangs(f: _View) -> None:
    """A fringe with a wavy lower edge just above the eyebrows."""
    edge = f.eye_y - 0.15 + 0.012 * np.sin(f.X * 45 + _col(f.sc["bang_phase"]))
    bangs = np.maximum(_ellipse(f.X, f.Y, 0, -0.04, f.ax + 0.02, f.ay + 0.02), f.Y - edge)
    f.paint(f.cov(bangs), f.hair)


def _r_forehead(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _inside(_box(X, Y, 0, g["eye_y"] - 0.27, g["face_ax"] + 0.02, 0.15))


def _bald_shine(f: _View) -> None:
    shine = np.exp(-((f.X + 0.1) ** 2 + (f.Y + 0.45) ** 2) / (2 * 0.08 ** 2))
    f.paint(shine * 0.35, _const([250, 245, 240], f.n))


def _r_scalp(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _in_ellipse(X, Y, 0, -0.04, g["face_ax"] + 0.06, g["face_ay"] + 0.05) & (Y < g["eye_y"] - 0.2)


def _r_bald(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    """Bald: the bare scalp with its shine (drawn here) and the hair _hair_back and _hair_cap leave out."""
    return _r_scalp(X, Y, g) | _r_hair(X, Y, g)


def _earrings(f: _View) -> None:
    """A gold or silver disc below each ear, with a dark rim so it shows on blond hair too."""
    gold = f.sc["metal"][:, None] < 0.5
    metal = np.where(gold, np.float32([230, 190, 50]), np.float32([215, 215, 225]))
    disc = _ellipse(f.Xa, f.Y, f.ax + 0.01, 0.165, 0.05, 0.05)
    f.paint(f.cov(disc - 0.012), _const([40, 30, 20], f.n))
    f.paint(f.cov(disc), metal)


def _r_ears(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _in_ellipse(np.abs(X), Y, g["face_ax"] + 0.01, 0.165, 0.09, 0.09)


def _glasses(f: _View) -> None:
    """Tinted lenses, rings around both eyes, a bridge and the arms towards the ears."""
    Xa, Y, ex, ey = f.Xa, f.Y, f.eye_dx, f.eye_y
    lens = _ellipse(Xa, Y, ex, ey, 0.115, 0.09)
    f.paint(f.cov(lens) * _col(f.sc["lens"]), _const([30, 30, 40], f.n))
    frame = np.minimum(np.abs(lens) - 0.025, _segment(Xa, Y, (0.0, ey), (ex - 0.1, ey), 0.016))
    frame = np.minimum(frame, _segment(Xa, Y, (ex + 0.115, ey), (f.ax + 0.02, ey - 0.02), 0.014))
    f.paint(f.cov(frame), _pick(_FRAME, f.sc["frame_pick"]))


def _r_eye_band(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _inside(_box(X, Y, 0, g["eye_y"], g["face_ax"] + 0.04, 0.125))


def _hat(f: _View) -> None:
    """A crown over the top of the head and a brim at the forehead."""
    top = f.eye_y - 0.36
    crown = np.maximum(_ellipse(f.X, f.Y, 0, top, f.ax + 0.05, 0.42), f.Y - top)
    f.paint(f.cov(crown), f.sc["hat_col"])
    f.paint(f.cov(_ellipse(f.X, f.Y, 0, top, f.ax + 0.2, 0.055)), f.sc["hat_col"] * 0.8)


def _r_top(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    top = g["eye_y"] - 0.36
    return _in_ellipse(X, Y, 0, top, g["face_ax"] + 0.22, 0.5) & (Y < top + 0.07)


# ----------------------------------------------------------------------------- the table


_HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")

# back to front; a region that spans several painters sits with one of them (its docstring says
# where the other parts are drawn)
FEATURES: list[Feature] = [
    Feature(_body, (-1.0, 1.0, 0.3, 2.0)),
    Feature(_hair_back, (-0.72, 0.72, -0.72, 0.9), _has("Bald", False),
            regions={name: _r_hair for name in _HAIR_COLOURS}),
    Feature(_head, (-0.62, 0.62, -0.66, 0.66), regions={"Male": _r_male, "Pale_Skin": _r_skin}),
    Feature(_age_lines, (-0.36, 0.36, -0.37, 0.43), _has("Young", False), regions={"Young": _r_age}),
    Feature(_rosy_cheeks, (-0.47, 0.47, -0.08, 0.34), _has("Rosy_Cheeks"),
            regions={"Rosy_Cheeks": _r_cheeks}),
    Feature(_makeup, (-0.47, 0.47, -0.17, 0.34), _has("Heavy_Makeup"),
            regions={"Heavy_Makeup": _r_makeup}),
    Feature(_eyes, (-0.33, 0.33, -0.17, 0.04), regions={"Narrow_Eyes": _r_eyes}),
    Feature(_brows, (-0.32, 0.32, -0.29, -0.08),
            regions={"Bushy_Eyebrows": _r_brows, "Arched_Eyebrows": _r_brows}),
    Feature(_nose, (-0.13, 0.13, -0.02, 0.19), regions={"Big_Nose": _r_nose}),
    Feature(_beard, (-0.56, 0.56, -0.06, 0.7), lambda a: ~a["No_Beard"] | a["Goatee"],
            regions={"No_Beard": _r_lower_face, "Goatee": _r_chin}),
    Feature(_mouth, (-0.22, 0.22, 0.22, 0.47),
            regions={"Smiling": _r_mouth, "Mouth_Slightly_Open": _r_mouth, "Wearing_Lipstick": _r_lips}),
    Feature(_mustache, (-0.19, 0.19, 0.16, 0.34), _has("Mustache"), regions={"Mustache": _r_mustache}),
    Feature(_sideburns, (-0.56, 0.56, -0.24, 0.26), _has("Sideburns"),
            regions={"Sideburns": _r_sideburns}),
    Feature(_hair_cap, (-0.6, 0.6, -0.73, -0.09), _has("Bald", False)),
    Feature(_bangs, (-0.6, 0.6, -0.73, -0.09), _has("Bangs"), regions={"Bangs": _r_forehead}),
    Feature(_bald_shine, (-0.36, 0.16, -0.71, -0.19), _has("Bald"), regions={"Bald": _r_bald}),
    Feature(_earrings, (-0.6, 0.6, 0.09, 0.24), _has("Wearing_Earrings"),
            regions={"Wearing_Earrings": _r_ears}),
    Feature(_glasses, (-0.57, 0.57, -0.22, 0.1), _has("Eyeglasses"), regions={"Eyeglasses": _r_eye_band}),
    Feature(_hat, (-0.76, 0.76, -0.91, -0.31), _has("Wearing_Hat"), regions={"Wearing_Hat": _r_top}),
]


def _attribute_regions(features: list[Feature]) -> dict[str, Region]:
    """attribute -> evidence region, from the table; every attribute must have exactly one."""
    regions: dict[str, Region] = {}
    for feature in features:
        for name, region in feature.regions.items():
            if name in regions:
                raise RuntimeError(f"synthetic attribute {name} has two evidence regions in FEATURES")
            regions[name] = region
    missing = [name for name in ATTRIBUTES if name not in regions]
    unknown = [name for name in regions if name not in ATTRIBUTES]
    if missing or unknown:
        raise RuntimeError(f"FEATURES lacks evidence regions for {missing}, has some for unknown {unknown}")
    return regions


REGIONS: dict[str, Region] = _attribute_regions(FEATURES)
