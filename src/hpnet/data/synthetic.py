"""Synthetic faces: the built-in, procedurally drawn data set with CelebA attribute names.

Generative model
----------------
Each image is made in three steps, all from one ``numpy.random.Generator(PCG64(seed))``:

1. **Attributes** (:func:`_sample_attributes`) are drawn from a hand-made prior with CelebA-like
   dependencies, in this order:

   - ``Male`` ~ 50%; ``Young`` ~ 55% (a little more often for women).
   - ``Bald``: mostly older men (45%), some young men (20%), rarely women (2%).
   - hair colour, one of Black / Blond / Brown / Gray / "other" (auburn, red), so the four labels
     are mutually exclusive; Gray is likely when not Young, Blond more likely for women.
     ``Bald`` implies no hair colour and no ``Bangs``. ``Bangs`` is more common for women.
   - facial hair only for men: a beard (``No_Beard`` = 0) for 70% of men; a beard is either full
     or a ``Goatee``; ``Mustache`` and ``Sideburns`` are more likely with a beard.
   - ``Wearing_Lipstick`` mostly women; ``Heavy_Makeup`` mostly with lipstick (strong positive
     link); ``Rosy_Cheeks`` more likely for women and with makeup; ``Arched_Eyebrows`` mostly women,
     more with makeup; ``Wearing_Earrings`` mostly women.
   - ``Smiling`` ~ 48%; ``Mouth_Slightly_Open`` likely when smiling; ``Narrow_Eyes`` more likely
     when smiling; ``Eyeglasses`` more likely when not Young; ``Bushy_Eyebrows`` and ``Big_Nose``
     more likely for men; ``Pale_Skin`` and ``Wearing_Hat`` independent.

2. **Scene** (:func:`_sample_scene`): nuisance that does not depend on the attributes: face centre
   (jitter), scale, in-plane tilt, small shifts of eyes and mouth, skin tone, colours of hair,
   clothes, hat, lipstick, eye shadow, background colours with a gradient and a wave texture,
   global lighting (gain, directional gradient, colour tint, contrast) and pixel noise strength.

3. **Rendering** (:func:`_render`): a deterministic function of (attributes, scene). Every shape is
   a soft-edged distance field on the pixel grid in face coordinates (the face ellipse spans about
   [-0.45, 0.45] x [-0.6, 0.6]; y points down), painted in batches of images with numpy
   broadcasting. What each attribute draws, and where (the same place :meth:`SyntheticFaces.
   region_masks` reports as ground truth):

   ============================  ===============================================================
   Smiling                       mouth curve with raised corners, wider mouth (mouth box)
   Mouth_Slightly_Open           dark open-mouth ellipse, teeth when also smiling (mouth box)
   Eyeglasses                    rings around both eyes, bridge and arms (eye band)
   Wearing_Hat                   crown and brim over the top of the head (top of head)
   Black/Blond/Brown/Gray_Hair   colour of the hair cap and hair behind the head (hair region)
   Bald                          no hair: skin up to the crown, a highlight (scalp, hair region)
   Bangs                         fringe over the forehead (forehead)
   Mustache                      band between nose and upper lip (below nose)
   No_Beard (0)                  full beard over jaw and chin, unless Goatee (lower face)
   Goatee                        beard on the chin only (chin)
   Sideburns                     hair strips at both temples down to the cheeks (face sides)
   Wearing_Lipstick              saturated lip colour instead of a skin-like one (lips)
   Heavy_Makeup                  eye shadow, eyeliner and light blush (eyes and cheeks)
   Rosy_Cheeks                   reddish blobs on both cheeks (cheeks)
   Pale_Skin                     light, desaturated skin tone (face, ears, neck)
   Male                          wider face, squarer jaw, wider neck, mostly short hair
                                 (head outline, hair beside the face, neck)
   Young                         no wrinkles; not Young draws forehead, smile and eye lines
                                 (forehead, cheeks beside the nose, outer eye corners)
   Narrow_Eyes                   eye height about halved (eyes)
   Bushy_Eyebrows                thick eyebrows (brows)
   Arched_Eyebrows               strongly curved eyebrows (brows)
   Big_Nose                      wider nose base and nostrils (nose)
   Wearing_Earrings              small metal dots below the ears (ear lobes)
   ============================  ===============================================================

Eyebrows, beards, mustaches and sideburns take a darker shade of the hair colour (the "other"
one for a bald head). Subtle attributes are small, low-contrast cues (wrinkles, narrow eyes, nose
size), and nuisance overlaps with cues on purpose: lighting gain and skin tone overlap with
Pale_Skin, makeup blush overlaps with Rosy_Cheeks, a hat hides the hair colour, a light beard
looks like stubble.
The per-image geometry (centre, scale, tilt, face size, eye and mouth positions) is kept, so the
evidence regions are computed on demand instead of stored.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np
import torch

from hpnet.data.base import ArrayDataset
from hpnet.errors import HPNetError

ATTRIBUTES: list[str] = [
    "Arched_Eyebrows", "Bald", "Bangs", "Big_Nose", "Black_Hair", "Blond_Hair", "Brown_Hair",
    "Bushy_Eyebrows", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "Male",
    "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Pale_Skin", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Young",
]

# columns of SyntheticFaces.geometry: what region_masks needs to place the face on the grid
GEOMETRY: list[str] = ["cx", "cy", "scale", "angle", "face_ax", "face_ay", "eye_y", "eye_dx", "mouth_y"]

_PIXELS_PER_BATCH = 500_000  # bounds memory: one float32 (B, S, S) array is about 2 MB
_THREADS = 2  # batches drawn side by side

Arrays = dict[str, np.ndarray]
Num = float | np.ndarray  # a constant, or per-image values shaped (B, 1, 1) to broadcast
Region = Callable[[np.ndarray, np.ndarray, Arrays], np.ndarray]  # (X, Y, geometry) -> bool mask


# ----------------------------------------------------------------------------- public API


class SyntheticFaces(ArrayDataset):
    """Synthetic faces in memory, with the per-image geometry behind the evidence regions."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, attribute_names: list[str],
                 geometry: torch.Tensor):
        super().__init__(images, targets, attribute_names)
        if geometry.shape != (images.shape[0], len(GEOMETRY)):
            raise ValueError(f"geometry shape {tuple(geometry.shape)} does not match "
                             f"{images.shape[0]} images x {len(GEOMETRY)} values")
        self.geometry = geometry.float()

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def subset(self, indices: torch.Tensor) -> "SyntheticFaces":
        return SyntheticFaces(self.images[indices], self.targets[indices], self.attribute_names,
                              self.geometry[indices])

    def region_masks(self, indices: torch.Tensor | Sequence[int] | np.ndarray | None = None) -> torch.Tensor:
        """Where each attribute's evidence lies: bool ``(n, K, S, S)`` for the given images (all if None)."""
        geometry = self.geometry if indices is None else self.geometry[torch.as_tensor(indices).cpu()]
        geometry = geometry.reshape(-1, len(GEOMETRY)).numpy()
        return torch.from_numpy(_region_masks(geometry, self.attribute_names, self.image_size))


def generate(n: int, image_size: int = 64, seed: int = 0,
             attributes: list[str] | None = None) -> SyntheticFaces:
    """Draw ``n`` synthetic faces of ``image_size`` x ``image_size`` pixels, deterministic from ``seed``.

    ``attributes`` picks the target columns, in the given order (default: all of :data:`ATTRIBUTES`).
    The images do not depend on that choice: every attribute is always sampled and drawn.
    """
    names = _check_arguments(n, image_size, attributes)
    n, image_size = int(n), int(image_size)
    rng = np.random.Generator(np.random.PCG64(seed))
    attrs = _sample_attributes(rng, n)
    scene = _sample_scene(rng, n)
    noise_seed = int(rng.integers(0, 2**63 - 1))
    images = _render(attrs, scene, image_size, noise_seed)
    targets = np.stack([attrs[name] for name in names], axis=1).astype(np.float32)
    geometry = _geometry(attrs, scene)
    return SyntheticFaces(torch.from_numpy(images), torch.from_numpy(targets), names,
                          torch.from_numpy(geometry))


def _check_arguments(n: int, image_size: int, attributes: list[str] | None) -> list[str]:
    if int(n) < 1:
        raise HPNetError(f"synthetic data needs n >= 1 images, got {n}")
    if int(image_size) < 8:
        raise HPNetError(f"synthetic image_size must be >= 8 pixels, got {image_size}")
    if attributes is None:
        return list(ATTRIBUTES)
    unknown = [a for a in attributes if a not in ATTRIBUTES]
    if unknown:
        raise HPNetError(f"unknown synthetic attribute {unknown[0]!r}; valid: {', '.join(ATTRIBUTES)}")
    if len(set(attributes)) != len(attributes):
        raise HPNetError(f"synthetic attributes are listed twice: {', '.join(attributes)}")
    if not attributes:
        raise HPNetError("synthetic attributes list is empty")
    return list(attributes)


# ----------------------------------------------------------------------------- sampling


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


# ----------------------------------------------------------------------------- drawing primitives


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


def _paint(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Alpha-blend a colour (B, 3) into img (B, 3, h, w) with alpha (B, h, w), in place."""
    step = colour[:, :, None, None] - img
    step *= alpha[:, None]
    img += step


def _col(v: np.ndarray) -> np.ndarray:
    """Per-image scalar (B,) -> (B, 1, 1), to broadcast over the pixel grid."""
    return v[:, None, None]


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


# ----------------------------------------------------------------------------- rendering


def _render(attrs: dict[str, np.ndarray], scene: Arrays, size: int, noise_seed: int) -> np.ndarray:
    """Draw every image: uint8 (N, 3, S, S).

    Batches bound the memory for any N and S; two threads draw batches side by side (numpy lets
    go of the GIL in its loops), and each batch has its own noise stream, so the result does not
    depend on the order in which batches finish.
    """
    n = len(scene["cx"])
    geometry = _geometry(attrs, scene)
    out = np.empty((n, 3, size, size), np.uint8)
    step = max(1, _PIXELS_PER_BATCH // (size * size))
    starts = range(0, n, step)
    seeds = np.random.SeedSequence(noise_seed).spawn(len(starts))

    def run(start: int, seed: np.random.SeedSequence) -> None:
        sl = slice(start, min(n, start + step))
        a = {k: v[sl] for k, v in attrs.items()}
        sc = {k: v[sl] for k, v in scene.items()}
        img = _light(_draw_batch(a, sc, geometry[sl], size), sc, size)
        noise = np.random.Generator(np.random.PCG64(seed)).standard_normal(img.shape, dtype=np.float32)
        noise *= _col(sc["noise"])[:, None]
        img += noise + 0.5  # + 0.5: the uint8 cast truncates, this rounds
        np.clip(img, 0, 255, out=img)
        out[sl] = img.astype(np.uint8)

    workers = min(_THREADS, len(starts))
    if workers == 1:
        for start, seed in zip(starts, seeds):
            run(start, seed)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, starts, seeds))
    return out


def _background(sc: Arrays, size: int) -> np.ndarray:
    """Two-colour linear gradient in a random direction plus a low-frequency wave texture."""
    x, y = _canvas(size)
    d = _col(sc["bg_dir"])
    t = 0.5 + 0.5 * (np.cos(d) * x + np.sin(d) * y)
    f = sc["tex_freq"]
    wave = np.sin(_col(f[:, 0]) * x + _col(f[:, 1]) * y + _col(sc["tex_phase"])) * _col(sc["tex_amp"])
    bg1, bg2 = sc["bg1"][:, :, None, None], sc["bg2"][:, :, None, None]
    return (bg1 + (bg2 - bg1) * t[:, None] + wave[:, None]).astype(np.float32)


def _light(img: np.ndarray, sc: Arrays, size: int) -> np.ndarray:
    """Global lighting: gain, a directional gradient, a colour tint and a contrast change."""
    x, y = _canvas(size)
    d = _col(sc["light_dir"])
    shade = 1 + _col(sc["light_k"]) * (np.cos(d) * x + np.sin(d) * y)
    img *= (_col(sc["gain"]) * shade)[:, None] * sc["tint"][:, :, None, None]
    mean = img.mean(axis=(1, 2, 3), keepdims=True)
    return (img - mean) * _col(sc["contrast"])[:, None] + mean


def _const(rgb: Sequence[float], n: int) -> np.ndarray:
    return np.tile(np.asarray(rgb, np.float32), (n, 1))


class _View:
    """A window of one batch: some images (those a layer draws on) and a box of pixels.

    Layers only see a view, so a small feature costs a small part of the grid and a rare
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
    """Everything one batch needs to draw: coordinates, canvas and per-image parameters."""

    def __init__(self, a: dict[str, np.ndarray], sc: Arrays, g: np.ndarray, size: int):
        self.a, self.sc, self.g, self.size = a, sc, g, size
        self.X, self.Y, s = _face_coords(g, size)
        self.img = _background(sc, size)
        p = {k: _col(g[:, i]) for i, k in enumerate(GEOMETRY)}
        p["pw"] = (2.0 / size) / s  # one pixel in face units: the soft-edge width
        p["skin"] = _skin(a["Pale_Skin"], sc["tone"])
        p["hair"] = _hair_colour(a, sc)
        # eyebrows and beards are a darker shade of the hair colour (the "other" one when bald)
        p["dark_hair"] = p["hair"] * 0.7
        self.p = p
        self.is_ = {k: _col(v.astype(np.float32)) for k, v in a.items()}

    def view(self, box: tuple[float, float, float, float], only: np.ndarray | None) -> _View | None:
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


def _draw_batch(a: dict[str, np.ndarray], sc: Arrays, g: np.ndarray, size: int) -> np.ndarray:
    """Paint background, head and every attribute's shape for one batch, back to front."""
    batch = _Batch(a, sc, g, size)
    for draw, box, only in _LAYERS:
        view = batch.view(box, None if only is None else only(a))
        if view is not None:
            draw(view)
            view.commit()
    return batch.img


def _body(f: _View) -> None:
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


def _head(f: _View) -> None:
    # ears sit under the head outline, their outer half shows
    f.paint(f.cov(_ellipse(f.Xa, f.Y, f.ax, 0.0, 0.06, 0.1)), f.skin * 0.93)
    f.paint(f.cov(f.face), f.skin)


def _age_lines(f: _View) -> None:
    """Not Young: faint forehead lines, smile lines and crow's feet (low contrast on purpose)."""
    X, Y, Xa, ey, ex = f.X, f.Y, f.Xa, f.eye_y, f.eye_dx
    d = np.minimum(_box(X, Y, 0, ey - 0.2, 0.15, 0.008), _box(X, Y, 0, ey - 0.25, 0.13, 0.008))
    d = np.minimum(d, _segment(Xa, Y, (0.08, 0.16), (0.16, f.mouth_y + 0.05), 0.009))
    d = np.minimum(d, _segment(Xa, Y, (ex + 0.09, ey - 0.01), (ex + 0.14, ey + 0.02), 0.008))
    f.paint(f.cov(d) * 0.8, f.skin * 0.6)


def _cheek_blob(f: _View) -> np.ndarray:
    r2 = (f.Xa - 0.25) ** 2 + (f.Y - 0.13) ** 2
    return np.exp(-r2 / (2 * 0.065 ** 2)) * f.cov(f.face + 0.03)


def _rosy_cheeks(f: _View) -> None:
    f.paint(_cheek_blob(f) * 0.8, _const([210, 65, 75], f.n))


def _makeup(f: _View) -> None:
    """Heavy_Makeup: eye shadow over the upper lids and a light pink blush where rosy cheeks go."""
    f.paint(_cheek_blob(f) * 0.22, _const([225, 130, 140], f.n))
    shadow = _ellipse(f.Xa, f.Y, f.eye_dx, f.eye_y - 0.025, 0.1, 0.055)
    f.paint(f.cov(shadow) * 0.6, _pick(_SHADOW, f.sc["shadow_pick"]))


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


def _brows(f: _View) -> None:
    """Bushy_Eyebrows: thickness; Arched_Eyebrows: curvature of the brow line."""
    u = f.Xa - f.eye_dx
    arch = 0.006 + 0.04 * f.is_["Arched_Eyebrows"]
    yb = f.eye_y - 0.11 - arch * (1 - (u / 0.1) ** 2)
    th = (0.013 + 0.025 * f.is_["Bushy_Eyebrows"]) * _col(f.sc["brow_th"])
    d = np.maximum(np.abs(f.Y - yb) - th, np.abs(u) - 0.1)
    f.paint(f.cov(d) * 0.9, f.dark_hair)


def _nose(f: _View) -> None:
    """A faint bridge, the nose base (wider for Big_Nose) and two nostrils."""
    X, Xa, Y = f.X, f.Xa, f.Y
    big = f.is_["Big_Nose"]
    f.paint(f.cov(_segment(X, Y, (0.0, 0.0), (0.0, 0.13), 0.008)) * 0.35, f.skin * 0.75)
    w = 0.048 + 0.04 * big
    f.paint(f.cov(_ellipse(X, Y, 0, 0.14, w, 0.03 + 0.01 * big)) * 0.55, f.skin * 0.8)
    nostril = _ellipse(Xa, Y, w * 0.55, 0.155, 0.012 + 0.005 * big, 0.009)
    f.paint(f.cov(nostril) * 0.7, f.skin * 0.45)


def _beard(f: _View) -> None:
    """A Goatee on the chin only, else (not No_Beard) a full beard over jaw and chin."""
    X, Y, face = f.X, f.Y, f.face
    goatee = f.is_["Goatee"]
    d_full = np.maximum(face - 0.015, 0.22 - 0.25 * (X / f.ax) ** 2 - Y)
    d_goatee = np.maximum(_ellipse(X, Y, 0, f.mouth_y + 0.15, 0.12, 0.16), face - 0.03)
    d = np.where(goatee > 0, d_goatee, d_full)
    f.paint(f.cov(d) * _col(f.sc["beard_alpha"]), f.dark_hair)


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


def _mustache(f: _View) -> None:
    y_m = f.mouth_y - 0.09 + 0.025 * (f.X / 0.17) ** 2
    d = np.maximum(np.abs(f.Y - y_m) - 0.038, f.Xa - 0.17)
    f.paint(f.cov(d), f.dark_hair)


def _sideburns(f: _View) -> None:
    d = np.maximum(_box(f.Xa, f.Y, f.ax - 0.055, f.eye_y + 0.07, 0.055, 0.19), f.face)
    f.paint(f.cov(d) * 0.9, f.dark_hair)


def _hair_cap(f: _View) -> None:
    """Hair above the hairline, which dips towards the temples."""
    X, Y, ax = f.X, f.Y, f.ax
    hairline = f.eye_y - 0.29 + _col(f.sc["hairline"]) + 0.18 * (X / ax) ** 2
    cap = np.maximum(_ellipse(X, Y, 0, -0.04, ax + 0.04, f.ay + 0.025), Y - hairline)
    f.paint(f.cov(cap), f.hair)


def _bangs(f: _View) -> None:
    """A fringe with a wavy lower edge just above the eyebrows."""
    edge = f.eye_y - 0.15 + 0.012 * np.sin(f.X * 45 + _col(f.sc["bang_phase"]))
    bangs = np.maximum(_ellipse(f.X, f.Y, 0, -0.04, f.ax + 0.02, f.ay + 0.02), f.Y - edge)
    f.paint(f.cov(bangs), f.hair)


def _bald_shine(f: _View) -> None:
    shine = np.exp(-((f.X + 0.1) ** 2 + (f.Y + 0.45) ** 2) / (2 * 0.08 ** 2))
    f.paint(shine * 0.35, _const([250, 245, 240], f.n))


def _earrings(f: _View) -> None:
    """A gold or silver disc below each ear, with a dark rim so it shows on blond hair too."""
    gold = f.sc["metal"][:, None] < 0.5
    metal = np.where(gold, np.float32([230, 190, 50]), np.float32([215, 215, 225]))
    disc = _ellipse(f.Xa, f.Y, f.ax + 0.01, 0.165, 0.05, 0.05)
    f.paint(f.cov(disc - 0.012), _const([40, 30, 20], f.n))
    f.paint(f.cov(disc), metal)


def _glasses(f: _View) -> None:
    """Tinted lenses, rings around both eyes, a bridge and the arms towards the ears."""
    Xa, Y, ex, ey = f.Xa, f.Y, f.eye_dx, f.eye_y
    lens = _ellipse(Xa, Y, ex, ey, 0.115, 0.09)
    f.paint(f.cov(lens) * _col(f.sc["lens"]), _const([30, 30, 40], f.n))
    frame = np.minimum(np.abs(lens) - 0.025, _segment(Xa, Y, (0.0, ey), (ex - 0.1, ey), 0.016))
    frame = np.minimum(frame, _segment(Xa, Y, (ex + 0.115, ey), (f.ax + 0.02, ey - 0.02), 0.014))
    f.paint(f.cov(frame), _pick(_FRAME, f.sc["frame_pick"]))


def _hat(f: _View) -> None:
    """A crown over the top of the head and a brim at the forehead."""
    top = f.eye_y - 0.36
    crown = np.maximum(_ellipse(f.X, f.Y, 0, top, f.ax + 0.05, 0.42), f.Y - top)
    f.paint(f.cov(crown), f.sc["hat_col"])
    f.paint(f.cov(_ellipse(f.X, f.Y, 0, top, f.ax + 0.2, 0.055)), f.sc["hat_col"] * 0.8)


def _has(name: str, value: bool = True) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    return lambda a: a[name] == value


# back to front: (draw, face-coordinate box that holds its shapes in every image, which images)
_LAYERS: list[tuple[Callable[[_View], None], tuple[float, float, float, float],
                    Callable[[dict[str, np.ndarray]], np.ndarray] | None]] = [
    (_body, (-1.0, 1.0, 0.3, 2.0), None),
    (_hair_back, (-0.72, 0.72, -0.72, 0.9), _has("Bald", False)),
    (_head, (-0.62, 0.62, -0.66, 0.66), None),
    (_age_lines, (-0.36, 0.36, -0.37, 0.43), _has("Young", False)),
    (_rosy_cheeks, (-0.47, 0.47, -0.08, 0.34), _has("Rosy_Cheeks")),
    (_makeup, (-0.47, 0.47, -0.17, 0.34), _has("Heavy_Makeup")),
    (_eyes, (-0.33, 0.33, -0.17, 0.04), None),
    (_brows, (-0.32, 0.32, -0.29, -0.08), None),
    (_nose, (-0.13, 0.13, -0.02, 0.19), None),
    (_beard, (-0.56, 0.56, -0.06, 0.7), lambda a: ~a["No_Beard"] | a["Goatee"]),
    (_mouth, (-0.22, 0.22, 0.22, 0.47), None),
    (_mustache, (-0.19, 0.19, 0.16, 0.34), _has("Mustache")),
    (_sideburns, (-0.56, 0.56, -0.24, 0.26), _has("Sideburns")),
    (_hair_cap, (-0.6, 0.6, -0.73, -0.09), _has("Bald", False)),
    (_bangs, (-0.6, 0.6, -0.73, -0.09), _has("Bangs")),
    (_bald_shine, (-0.36, 0.16, -0.71, -0.19), _has("Bald")),
    (_earrings, (-0.6, 0.6, 0.09, 0.24), _has("Wearing_Earrings")),
    (_glasses, (-0.57, 0.57, -0.22, 0.1), _has("Eyeglasses")),
    (_hat, (-0.76, 0.76, -0.91, -0.31), _has("Wearing_Hat")),
]


def _window(g: np.ndarray, size: int, box: tuple[float, float, float, float]) -> tuple[slice, slice]:
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


# ----------------------------------------------------------------------------- evidence regions


def _region_masks(geometry: np.ndarray, names: list[str], size: int) -> np.ndarray:
    """Bool (n, K, S, S): for each image and attribute, where its evidence is drawn."""
    out = np.zeros((len(geometry), len(names), size, size), bool)
    # small images: test several points per pixel, so a region smaller than a pixel still marks it
    sub = max(1, -(-48 // size))
    fine = size * sub
    step = max(1, _PIXELS_PER_BATCH // (fine * fine))  # bounds the float coordinate grids
    for start in range(0, len(geometry), step):
        g = geometry[start:start + step]
        X, Y, _ = _face_coords(g, fine)
        geo = {k: _col(g[:, i]) for i, k in enumerate(GEOMETRY)}
        done: dict[Region, np.ndarray] = {}  # several attributes share a region (hair colours)
        for k, name in enumerate(names):
            region = _REGIONS[name]
            if region not in done:
                hit = region(X, Y, geo).reshape(len(g), size, sub, size, sub).any(axis=(2, 4))
                done[region] = _dilate(hit)
            out[start:start + step, k] = done[region]
    return out


def _dilate(mask: np.ndarray) -> np.ndarray:
    """Grow masks by one pixel (3 x 3), to hold the soft, anti-aliased edges of the shapes."""
    rows = mask.copy()
    rows[..., 1:, :] |= mask[..., :-1, :]
    rows[..., :-1, :] |= mask[..., 1:, :]
    out = rows.copy()
    out[..., :, 1:] |= rows[..., :, :-1]
    out[..., :, :-1] |= rows[..., :, 1:]
    return out


def _inside(d: np.ndarray) -> np.ndarray:
    return d <= 0


def _in_ellipse(X: np.ndarray, Y: np.ndarray, x0: Num, y0: Num, a: Num, b: Num) -> np.ndarray:
    """Inside test only: regions need no distances, and this is much cheaper than _ellipse."""
    return ((X - x0) / a) ** 2 + ((Y - y0) / b) ** 2 <= 1


def _r_mouth(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _inside(_box(X, Y, 0, g["mouth_y"] + 0.01, 0.21, 0.1))


def _r_eyes(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _inside(_box(np.abs(X), Y, g["eye_dx"], g["eye_y"], 0.11, 0.06))


def _r_eye_band(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _inside(_box(X, Y, 0, g["eye_y"], g["face_ax"] + 0.04, 0.125))


def _r_brows(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _inside(_box(np.abs(X), Y, g["eye_dx"], g["eye_y"] - 0.13, 0.125, 0.08))


def _r_hair(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    ax, ay = g["face_ax"], g["face_ay"]
    outer = _in_ellipse(X, Y, 0, 0.1, ax + 0.16, 0.82)
    face_below_hairline = _in_ellipse(X, Y, 0, 0, ax, ay) & (Y > g["eye_y"] - 0.26)
    return outer & ~face_below_hairline & (Y < 0.8)


def _r_top(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    top = g["eye_y"] - 0.36
    return _in_ellipse(X, Y, 0, top, g["face_ax"] + 0.22, 0.5) & (Y < top + 0.07)


def _r_scalp(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _in_ellipse(X, Y, 0, -0.04, g["face_ax"] + 0.06, g["face_ay"] + 0.05) & (Y < g["eye_y"] - 0.2)


def _r_bald(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _r_scalp(X, Y, g) | _r_hair(X, Y, g)


def _r_forehead(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _inside(_box(X, Y, 0, g["eye_y"] - 0.27, g["face_ax"] + 0.02, 0.15))


def _r_mustache(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _inside(_box(X, Y, 0, g["mouth_y"] - 0.078, 0.19, 0.06))


def _r_lower_face(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    ax, ay = g["face_ax"], g["face_ay"]
    return _in_ellipse(X, Y, 0, 0, ax + 0.05, ay + 0.05) & (Y > 0.2 - 0.25 * (X / ax) ** 2 - 0.03)


def _r_chin(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _in_ellipse(X, Y, 0, g["mouth_y"] + 0.15, 0.15, 0.19)


def _r_sideburns(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _inside(_box(np.abs(X), Y, g["face_ax"] - 0.05, g["eye_y"] + 0.07, 0.08, 0.21))


def _r_lips(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _inside(_box(X, Y, 0, g["mouth_y"] + 0.01, 0.2, 0.085))


def _r_cheeks(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return (np.abs(X) - 0.25) ** 2 + (Y - 0.13) ** 2 <= 0.13 ** 2


def _r_makeup(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _r_cheeks(X, Y, g) | _inside(_box(np.abs(X), Y, g["eye_dx"], g["eye_y"] - 0.015, 0.12, 0.08))


def _r_skin(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    ax, ay = g["face_ax"], g["face_ay"]
    face = _in_ellipse(X, Y, 0, 0, ax + 0.03, ay + 0.02)
    ears = _in_ellipse(np.abs(X), Y, ax, 0.0, 0.07, 0.11)
    neck = _inside(_box(X, Y, 0, 0.7, 0.25, 0.3))
    return face | ears | neck


def _r_male(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    """The head outline (width, jaw), the hair around it (length) and the neck."""
    ax, ay = g["face_ax"], g["face_ay"]
    outline = _in_ellipse(X, Y, 0, 0, ax + 0.08, ay + 0.08) & ~_in_ellipse(X, Y, 0, 0, ax - 0.08, ay - 0.08)
    long_hair = _in_ellipse(X, Y, 0, 0.1, ax + 0.16, 0.82) & (np.abs(X) > ax - 0.08) & (Y < 0.8)
    neck = _inside(_box(X, Y, 0, 0.7, 0.27, 0.3))
    return outline | long_hair | neck


def _r_age(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    forehead = _inside(_box(X, Y, 0, g["eye_y"] - 0.225, 0.18, 0.06))
    smile_lines = _inside(_box(np.abs(X), Y, 0.115, (0.16 + g["mouth_y"] + 0.05) / 2, 0.06, 0.13))
    crows = _inside(_box(np.abs(X), Y, g["eye_dx"] + 0.11, g["eye_y"] + 0.005, 0.04, 0.04))
    return forehead | smile_lines | crows


def _r_nose(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _inside(_box(X, Y, 0, 0.1, 0.11, 0.1))


def _r_ears(X: np.ndarray, Y: np.ndarray, g: Arrays) -> np.ndarray:
    return _in_ellipse(np.abs(X), Y, g["face_ax"] + 0.01, 0.165, 0.09, 0.09)


_REGIONS: dict[str, Region] = {
    "Arched_Eyebrows": _r_brows, "Bald": _r_bald, "Bangs": _r_forehead, "Big_Nose": _r_nose,
    "Black_Hair": _r_hair, "Blond_Hair": _r_hair, "Brown_Hair": _r_hair, "Gray_Hair": _r_hair,
    "Bushy_Eyebrows": _r_brows, "Eyeglasses": _r_eye_band, "Goatee": _r_chin,
    "Heavy_Makeup": _r_makeup, "Male": _r_male, "Mouth_Slightly_Open": _r_mouth,
    "Mustache": _r_mustache, "Narrow_Eyes": _r_eyes, "No_Beard": _r_lower_face,
    "Pale_Skin": _r_skin, "Rosy_Cheeks": _r_cheeks, "Sideburns": _r_sideburns,
    "Smiling": _r_mouth, "Wearing_Earrings": _r_ears, "Wearing_Hat": _r_top,
    "Wearing_Lipstick": _r_lips, "Young": _r_age,
}
