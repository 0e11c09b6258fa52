"""Rendering: attributes and scene to uint8 images, and the evidence regions as bool masks.

Both walk the feature table (features.py): images paint its features back to front over a
background, masks look up each attribute's region in it.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .draw import _Batch, _canvas, _col, _face_coords
from .features import FEATURES, REGIONS, Region
from .prior import GEOMETRY, Arrays, _geometry

_PIXELS_PER_BATCH = 500_000  # bounds memory: one float32 (B, S, S) array is about 2 MB
_THREADS = 2  # batches drawn side by side


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


def _draw_batch(a: dict[str, np.ndarray], sc: Arrays, g: np.ndarray, size: int) -> np.ndarray:
    """Paint the background and then every feature of the table for one batch, back to front."""
    batch = _Batch(a, sc, g, size, _background(sc, size))
    for feature in FEATURES:
        view = batch.view(feature.box, None if feature.only is None else feature.only(a))
        if view is not None:  # None: no image of the batch has this feature
            feature.paint(view)
            view.commit()
    return batch.img


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
            region = REGIONS[name]
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
