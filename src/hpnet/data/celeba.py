"""CelebA from a local folder, in torchvision's layout or the CSV variant; never downloads.

Layouts, looked for in ``ROOT/celeba`` and then in ``ROOT`` itself (the text one wins when both exist):

- ``txt`` (torchvision, the official files): ``img_align_celeba/*.jpg``, ``list_attr_celeba.txt`` (a
  count line, a header line of attribute names, then ``000001.jpg -1  1 ...`` rows; CRLF line ends)
  and ``list_eval_partition.txt`` (``000001.jpg 0``).
- ``csv`` (the Kaggle copy): ``list_attr_celeba.csv`` (``image_id,5_o_Clock_Shadow,...``) and
  ``list_eval_partition.csv`` (``image_id,partition``); images in ``img_align_celeba/`` or
  ``img_align_celeba/img_align_celeba/``.

Both layouts may hold ``list_landmarks_align_celeba.txt`` (or ``.csv``): the five landmarks of each
aligned image, which place its face parts (:mod:`hpnet.data.landmarks`); without it every image gets
the published mean positions.

Labels -1/1 (or 0/1) become float 0/1 once, at load. An image listed twice (in either file) or an
attribute named twice is refused naming both places, and every malformed line with one
:class:`~hpnet.errors.HPNetError` line naming its file and line. Images are cropped to their central
square (side = the shorter side, so by proportion at any resolution) and resized to ``image_size``.
The helpers here (:func:`load_image`, :func:`parse_split`, :func:`select_attributes`) are shared
with :mod:`hpnet.data.csvdata`. Reading and checking the label and partition files is
:mod:`hpnet.data.labelfiles`.
"""
from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from hpnet.data.base import MultiLabelDataset
# the label and partition files (re-exported: hpnet.data.csvdata and others import them from here)
from hpnet.data.labelfiles import (  # noqa: F401
    LAYOUTS,
    _read_attr_csv,
    _read_attr_txt,
    _read_partition,
    check_header,
    labels_array,
    parse_labels,
    read_csv_rows,
    read_text,
)
from hpnet.data.landmarks import celeba_landmarks
from hpnet.errors import HPNetError

SPLITS = ("train", "valid", "test")  # partition codes 0, 1, 2
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_REFUSED_MODES = {"I": "32-bit integer", "F": "32-bit floating point"}


def to_rgb(im: Image.Image, path: Path) -> Image.Image:
    """8-bit RGB: 16-bit greyscale scaled from 0..65535 to 0..255 (``convert`` would clip it), 32-bit
    integer and float images refused (no known range), every other mode by ``convert``.

    A 16-bit greyscale PNG opens as ``I;16`` in recent Pillow but as ``I`` in older versions; PNG
    caps grey at 16 bits, so an ``I`` PNG is scaled as 16-bit too.
    """
    if im.mode == "RGB":
        return im
    if im.mode in SIXTEEN_BIT_MODES or (im.mode == "I" and im.format == "PNG"):
        wide = np.asarray(im).astype(np.uint32)
        return Image.fromarray(((wide + 128) // 257).astype(np.uint8)).convert("RGB")  # round(v * 255 / 65535)
    if im.mode in _REFUSED_MODES:
        raise HPNetError(f"cannot use image {path}: pixel mode {im.mode} ({_REFUSED_MODES[im.mode]}) is not "
                         f"supported; save it as 8-bit RGB or greyscale, or 16-bit greyscale")
    return im.convert("RGB")


def load_image(path: str | Path, image_size: int) -> torch.Tensor:  # (3, S, S) uint8
    """Decode an image, crop its central square and resize it (antialiased bilinear) to ``image_size``.

    The square's side is the shorter side: 178x178 of CelebA's 178x218, 89x89 of the half-size sample.
    Pixel modes become RGB by :func:`to_rgb`.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            rgb = to_rgb(im, path)
            w, h = rgb.size
            side = min(w, h)
            left, top = round((w - side) / 2), round((h - side) / 2)  # as torchvision's CenterCrop
            square = rgb.crop((left, top, left + side, top + side))
            out = square.resize((image_size, image_size), Image.Resampling.BILINEAR)
    except FileNotFoundError:
        raise HPNetError(f"image file not found: {path}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = " ".join(str(exc).split())
        raise HPNetError(f"cannot decode image {path}: {reason}") from exc
    return torch.from_numpy(np.array(out)).permute(2, 0, 1).contiguous()  # (3, S, S)


def parse_split(split: str | Sequence[str]) -> tuple[str, ...]:
    """``"train"``, ``"valid"``, ``"test"``, ``"all"`` or a list of them -> split names in file order."""
    names = [split] if isinstance(split, str) else list(split) if isinstance(split, (list, tuple)) else []
    if "all" in names:
        return SPLITS
    if not names or any(s not in SPLITS for s in names):
        raise HPNetError(f"split must be 'train', 'valid', 'test', 'all' or a list of them, got {split!r}")
    return tuple(s for s in SPLITS if s in names)


def _positive_int(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 1


def check_image_size(image_size: int) -> int:
    if not _positive_int(image_size):
        raise HPNetError(f"image_size must be a positive integer, got {image_size!r}")
    return int(image_size)


def check_max_images(max_images: int | None) -> int | None:
    if max_images is not None and not _positive_int(max_images):
        raise HPNetError(f"max_images must be a positive integer or None, got {max_images!r}")
    return None if max_images is None else int(max_images)


def select_attributes(available: Sequence[str], wanted: Sequence[str] | str | None, source: Path) -> list[int]:
    """Column indices of ``wanted`` (all when None), in the order given."""
    if wanted is None:
        return list(range(len(available)))
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    unknown = [a for a in wanted if a not in available]
    if unknown:
        raise HPNetError(f"--attributes: unknown attribute(s) {', '.join(map(str, unknown))} (not in {source}; "
                         f"it has {', '.join(available)})")
    if not wanted or len(set(wanted)) != len(wanted):
        raise HPNetError(f"attributes must be distinct and non-empty, got {wanted!r}")
    return [list(available).index(a) for a in wanted]


def find_celeba(root: str | Path) -> tuple[Path, str]:
    """The folder holding the label files, and its layout (``"txt"`` or ``"csv"``)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise HPNetError(f"CelebA root folder not found: {root}")
    places = [root / "celeba", root]
    for place in places:
        for layout, (attr_file, _) in LAYOUTS.items():
            if (place / attr_file).is_file():
                return place, layout
    looked = " and ".join(str(p) for p in places)
    raise HPNetError(f"no CelebA label file in {looked}: looked for list_attr_celeba.txt (torchvision "
                     f"layout) and list_attr_celeba.csv (CSV layout)")


def _image_dir(base: Path) -> Path:
    folder = base / "img_align_celeba"
    nested = folder / "img_align_celeba"  # the Kaggle copy nests the folder
    if nested.is_dir():
        return nested
    if not folder.is_dir():
        raise HPNetError(f"CelebA image folder not found: {folder}")
    return folder


class CelebA(MultiLabelDataset):
    """CelebA read from a local folder (see the module docstring for the layouts).

    Args:
        root: the folder holding ``celeba/``, or the ``celeba/`` folder itself.
        split: ``"train"``, ``"valid"``, ``"test"``, ``"all"`` or a list of them (official partition).
        image_size: side ``S`` of the square images returned.
        attributes: attribute names to keep, in this order (default: all, in file order).
        max_images: keep only the first N images of the split, in file order.

    Items are ``(image, target)``: ``image`` uint8 ``(3, S, S)``, ``target`` float32 ``(K,)`` in {0, 1}.
    An empty split is allowed; :meth:`require_nonempty` raises with :meth:`empty_message`.
    """

    def __init__(self, root: str | Path, split: str | Sequence[str] = "train", image_size: int = 64,
                 attributes: Sequence[str] | None = None, max_images: int | None = None):
        self.image_size = check_image_size(image_size)
        self.max_images = check_max_images(max_images)
        self.splits = parse_split(split)
        self.base, self.layout = find_celeba(root)
        self.attr_file, self.partition_file = (self.base / name for name in LAYOUTS[self.layout])
        names, files, labels = (_read_attr_txt if self.layout == "txt" else _read_attr_csv)(self.attr_file)
        columns = select_attributes(names, attributes, self.attr_file)
        keep = self._select_rows(files)
        self.image_dir = _image_dir(self.base)
        self.all_attribute_names = names
        self.attribute_names = [names[c] for c in columns]
        self.filenames = [files[i] for i in keep]
        self.total = len(files)
        self.targets = torch.from_numpy(labels[np.ix_(np.asarray(keep, dtype=np.int64), columns)]).float()
        # (n, 5, 2) in [0, 1] of the crop: from list_landmarks_align_celeba.txt when there, else the mean
        self.landmarks, self.landmark_source = celeba_landmarks(self.base, self.filenames)

    def _select_rows(self, files: list[str]) -> list[int]:
        parts = _read_partition(self.partition_file, self.layout)
        missing = next((f for f in files if f not in parts), None)
        if missing is not None:
            raise HPNetError(f"{self.partition_file}: no partition for image {missing} "
                             f"(listed in {self.attr_file.name})")
        codes = {SPLITS.index(s) for s in self.splits}
        keep = [i for i, f in enumerate(files) if parts[f] in codes]
        return keep[: self.max_images]

    def image(self, index: int) -> torch.Tensor:  # (3, S, S) uint8
        return load_image(self.image_dir / self.filenames[index], self.image_size)

    def empty_message(self) -> str:
        """One line telling why this split has no images and what to do."""
        return (f"CelebA split {'+'.join(self.splits)} in {self.base} has no images "
                f"(0 of the {self.total} listed in {self.partition_file.name}); pick another split "
                f"or hold out part of train")

    def require_nonempty(self) -> "CelebA":
        if len(self) == 0:
            raise HPNetError(self.empty_message())
        return self

    def source_description(self) -> dict[str, Any]:
        """What the items depend on, for :func:`hpnet.data.cache.cache_key`."""
        return {"source": "celeba", "root": str(self.base.resolve()), "layout": self.layout,
                "split": list(self.splits), "image_size": self.image_size,
                "attributes": self.attribute_names, "max_images": self.max_images}

    def source_files(self) -> list[Path]:
        return [self.attr_file, self.partition_file]

    def __repr__(self) -> str:
        return (f"CelebA({str(self.base)!r}, layout={self.layout}, split={'+'.join(self.splits)}, "
                f"n={len(self)}, image_size={self.image_size}, attributes={len(self.attribute_names)})")
