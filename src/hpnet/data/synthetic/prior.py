"""The attribute prior and the scene: every random draw of the generator except the pixel noise.

The draws happen in a fixed order from the caller's generator (attributes, then scene), so a seed
gives the same faces; the scene does not depend on the attributes, so any attribute can be toggled
with everything else fixed.
"""
from __future__ import annotations

import numpy as np

# the target columns, in their default order; each has one evidence region in features.FEATURES
ATTRIBUTES: list[str] = [
    "Arched_Eyebrows", "Bald", "Bangs", "Big_Nose", "Black_Hair", "Blond_Hair", "Brown_Hair",
    "Bushy_Eyebrows", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "Male",
    "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Pale_Skin", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Young",
]

# columns of SyntheticFaces.geometry: what region_masks needs to place the face on the grid
GEOMETRY: list[str] = ["cx", "cy", "scale", "angle", "face_ax", "face_ay", "eye_y", "eye_dx", "mouth_y"]

Arrays = dict[str, np.ndarray]  # per-image values by name, first axis the image


def _sample_attributes(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """The attribute prior: boolean arrays of shape (n,), with CelebA-like dependencies."""
    u = rng.random((n, 24))
    col = iter(range(u.shape[1]))

    def bern(p: np.ndarray | float) -> np.ndarray:
        return u[:, next(col)] < p

    male = bern(0.5)
    young = bern(np.where(male, 0.5, 0.6))
    bald = bern(np.where(male, np.where(young, 0.2, 0.45), 0.02))
    hat = bern(0.18)
    # one categorical draw keeps the hair colours mutually exclusive
    weights = np.stack([
        np.full(n, 0.30),                       # black
        np.where(male, 0.10, 0.36),             # blond
        np.full(n, 0.28),                       # brown
        np.where(young, 0.05, 0.6),             # gray
        np.full(n, 0.10),                       # other (auburn, red)
    ], axis=1)
    cum = np.cumsum(weights / weights.sum(1, keepdims=True), axis=1)
    colour = (u[:, next(col), None] > cum).sum(1)
    has_hair = ~bald
    bangs = has_hair & bern(np.where(male, 0.12, 0.42))
    beard = male & bern(np.where(young, 0.65, 0.75))
    goatee = beard & bern(0.45)
    mustache = male & bern(np.where(beard, 0.5, 0.2))
    sideburns = male & has_hair & bern(np.where(beard, 0.55, 0.25))
    lipstick = bern(np.where(male, 0.02, 0.75))
    makeup = bern(np.where(lipstick, 0.65, np.where(male, 0.005, 0.08)))
    rosy = bern(0.08 + 0.12 * ~male + 0.1 * makeup)
    smiling = bern(0.48)
    return {
        "Arched_Eyebrows": bern(np.where(male, 0.06, np.where(makeup, 0.6, 0.35))),
        "Bald": bald,
        "Bangs": bangs,
        "Big_Nose": bern(np.where(male, 0.38, 0.12) + 0.1 * ~young),
        "Black_Hair": has_hair & (colour == 0),
        "Blond_Hair": has_hair & (colour == 1),
        "Brown_Hair": has_hair & (colour == 2),
        "Bushy_Eyebrows": bern(np.where(male, 0.32, 0.1)),
        "Eyeglasses": bern(np.where(young, 0.1, 0.3)),
        "Goatee": goatee,
        "Gray_Hair": has_hair & (colour == 3),
        "Heavy_Makeup": makeup,
        "Male": male,
        "Mouth_Slightly_Open": bern(np.where(smiling, 0.7, 0.2)),
        "Mustache": mustache,
        "Narrow_Eyes": bern(np.where(smiling, 0.25, 0.12)),
        "No_Beard": ~beard,
        "Pale_Skin": bern(0.2),
        "Rosy_Cheeks": rosy,
        "Sideburns": sideburns,
        "Smiling": smiling,
        "Wearing_Earrings": bern(np.where(male, 0.03, 0.38)),
        "Wearing_Hat": hat,
        "Wearing_Lipstick": lipstick,
        "Young": young,
    }


def _sample_scene(rng: np.random.Generator, n: int) -> Arrays:
    """Attribute-independent nuisance and style draws, so any attribute can be toggled alone."""
    def uni(lo: float, hi: float, *shape: int) -> np.ndarray:
        return rng.uniform(lo, hi, (n, *shape)).astype(np.float32)

    return {
        "cx": uni(-0.1, 0.1), "cy": uni(-0.1, 0.06), "scale": uni(0.84, 1.08),
        "angle": uni(-0.2, 0.2),
        "ax_jit": uni(-0.025, 0.025), "ay_jit": uni(-0.02, 0.02),
        "eye_y": uni(-0.08, -0.03), "eye_dx": uni(0.165, 0.195), "mouth_y": uni(0.31, 0.35),
        "gaze": uni(-0.02, 0.02), "eye_h": uni(0.85, 1.15), "brow_th": uni(0.85, 1.2),
        "tone": uni(0.0, 1.0), "hair_pick": uni(0.0, 1.0), "hair_jit": uni(-18, 18, 3),
        "long_hair": uni(0.0, 1.0), "hairline": uni(-0.03, 0.03), "bang_phase": uni(0, 6.3),
        "beard_alpha": uni(0.45, 0.95),
        "iris": uni(0.0, 1.0), "lip_pick": uni(0.0, 1.0), "shadow_pick": uni(0.0, 1.0),
        "cloth": uni(30, 230, 3), "hat_col": uni(20, 235, 3), "frame_pick": uni(0.0, 1.0),
        "lens": uni(0.0, 0.4), "metal": uni(0.0, 1.0),
        "bg1": uni(20, 235, 3), "bg2": uni(20, 235, 3), "bg_dir": uni(0, 6.3),
        "tex_amp": uni(0, 18), "tex_freq": uni(3, 14, 2), "tex_phase": uni(0, 6.3),
        "gain": uni(0.65, 1.3), "light_k": uni(0.0, 0.35), "light_dir": uni(0, 6.3),
        "tint": uni(0.93, 1.07, 3), "contrast": uni(0.75, 1.15), "noise": uni(1.5, 7),
    }


def _geometry(attrs: dict[str, np.ndarray], scene: Arrays) -> np.ndarray:
    """Per-image values (columns of GEOMETRY) that place every region on the pixel grid."""
    male = attrs["Male"].astype(np.float32)
    values = {
        "cx": scene["cx"], "cy": scene["cy"], "scale": scene["scale"], "angle": scene["angle"],
        # male faces are wider; jitter makes the width alone an unreliable cue
        "face_ax": 0.44 + 0.045 * male + scene["ax_jit"],
        "face_ay": 0.6 + scene["ay_jit"],
        "eye_y": scene["eye_y"], "eye_dx": scene["eye_dx"], "mouth_y": scene["mouth_y"],
    }
    return np.stack([values[k] for k in GEOMETRY], axis=1).astype(np.float32)
