"""Fake data sets written in the exact real formats, for tests (a helper module, not a test module).

``make_fake_celeba`` follows the official CelebA files byte for byte in style: CRLF line ends, a count
line, a header line of names ending in a space, rows ``000001.jpg -1  1 ...`` or ``000007.jpg 1 -1 ...``
(one space after the name, then each later value right-aligned in two characters after a space),
``000001.jpg 0`` partitions; or the Kaggle CSV variant (``image_id,5_o_Clock_Shadow,...`` and
``image_id,partition``, LF line ends). Images are real JPEGs.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

# the header of the official list_attr_celeba.txt, in its order
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def fake_image(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A random smooth RGB image of ``size`` (width, height): a few random colours upsampled."""
    coarse = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)


@lru_cache(maxsize=16)
def fake_jpegs(n: int, size: tuple[int, int], seed: int) -> tuple[bytes, ...]:
    """``n`` JPEG files (quality 90), encoded once per process: tests build many fake folders."""
    rng = np.random.default_rng([seed, 1])
    out = []
    for _ in range(n):
        buffer = io.BytesIO()
        fake_image(rng, size).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return tuple(out)


def default_partitions(n: int) -> tuple[int, int, int]:
    """Train/valid/test counts: a sixth each for valid and test (24 -> 16/4/4)."""
    return n - 2 * (n // 6), n // 6, n // 6


def _write(path: Path, lines: list[str], newline: str) -> None:
    path.write_bytes("".join(line + newline for line in lines).encode("ascii"))


def _write_labels(base: Path, layout: str, names: list[str], files: list[str], labels: np.ndarray,
                  codes: list[int]) -> None:
    if layout in ("txt", "both"):
        # as the official file: one space, then every later value right-aligned in two characters
        rows = [f"{name} {row[0]}" + "".join(f" {v:2d}" for v in row[1:]) for name, row in zip(files, labels)]
        _write(base / "list_attr_celeba.txt", [str(len(files)), " ".join(names) + " ", *rows], "\r\n")
        _write(base / "list_eval_partition.txt", [f"{f} {c}" for f, c in zip(files, codes)], "\r\n")
    if layout in ("csv", "both"):
        rows = [",".join([name, *map(str, row)]) for name, row in zip(files, labels)]
        _write(base / "list_attr_celeba.csv", [",".join(["image_id", *names]), *rows], "\n")
        parts = [f"{f},{c}" for f, c in zip(files, codes)]
        _write(base / "list_eval_partition.csv", ["image_id,partition", *parts], "\n")


def make_fake_celeba(root: Path, n: int = 24, layout: str = "txt", attributes: Sequence[str] | None = None,
                     partitions: Sequence[int] | None = None, image_size: tuple[int, int] = (178, 218),
                     seed: int = 0) -> Path:
    """Write a fake CelebA under ``root/celeba`` and return that folder.

    ``layout`` is ``"txt"`` (torchvision's), ``"csv"`` (Kaggle's) or ``"both"``; ``partitions`` gives the
    train/valid/test counts (default :func:`default_partitions`), assigned in file order like the real
    split. Labels are random -1/1 from ``seed``.
    """
    if layout not in ("txt", "csv", "both"):
        raise ValueError(f"layout must be 'txt', 'csv' or 'both', got {layout!r}")
    names = list(CELEBA_ATTRIBUTES if attributes is None else attributes)
    counts = default_partitions(n) if partitions is None else tuple(partitions)
    if sum(counts) != n or len(counts) != 3:
        raise ValueError(f"partitions {counts} must be three counts adding up to n={n}")
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random((n, len(names))) < 0.5, 1, -1)
    files = [f"{i + 1:06d}.jpg" for i in range(n)]
    codes = [c for c, count in enumerate(counts) for _ in range(count)]
    base = Path(root) / "celeba"
    (base / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    for name, data in zip(files, fake_jpegs(n, tuple(image_size), seed)):
        (base / "img_align_celeba" / name).write_bytes(data)
    _write_labels(base, layout, names, files, labels, codes)
    return base


def make_fake_csv_dataset(root: Path, n: int = 24, attributes: Sequence[str] = ("Smiling", "Male", "Young"),
                          with_split: bool = True, seed: int = 0) -> Path:
    """Write ``root/labels.csv`` (columns ``image``, the attributes as 0/1, ``split``) and landscape
    48x40 JPEGs under ``root/images/``; return the CSV path. Splits follow :func:`default_partitions`."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, len(attributes))) < 0.5).astype(int)
    train, valid, _ = default_partitions(n)
    header = ["image", *attributes] + (["split"] if with_split else [])
    lines = [",".join(header)]
    for i, (row, data) in enumerate(zip(labels, fake_jpegs(n, (48, 40), seed))):
        (root / "images" / f"{i:03d}.jpg").write_bytes(data)
        split = "train" if i < train else "valid" if i < train + valid else "test"
        lines.append(",".join([f"images/{i:03d}.jpg", *map(str, row)] + ([split] if with_split else [])))
    _write(root / "labels.csv", lines, "\n")
    return root / "labels.csv"


def write_fake_landmarks(base: Path, files: Sequence[str], points: np.ndarray, layout: str = "txt") -> Path:
    """Write ``list_landmarks_align_celeba.txt`` (or ``.csv``) into the CelebA folder ``base``: ``points``
    (n, 10) integer pixels of the 178 x 218 frame. The text file as the official one: CRLF line ends, the
    count line, the header ending in a space, rows ``000001.jpg 69  109  106  113   77  142 ...`` (one
    space, then every later value right-aligned in four characters after a space)."""
    header = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x "
              "rightmouth_y").split()
    points = np.asarray(points, dtype=int).reshape(len(files), 10)
    if layout == "txt":
        rows = [f"{name} {row[0]}" + "".join(f" {v:4d}" for v in row[1:]) for name, row in zip(files, points)]
        path = base / "list_landmarks_align_celeba.txt"
        _write(path, [str(len(files)), " ".join(header) + " ", *rows], "\r\n")
    else:
        rows = [",".join([name, *map(str, row)]) for name, row in zip(files, points)]
        path = base / "list_landmarks_align_celeba.csv"
        _write(path, [",".join(["image_id", *header]), *rows], "\n")
    return path
