"""Any multi-label image set described by one CSV file.

The CSV has a header row, an image path column (``image``, ``path``, ``file``, ``filename`` or
``image_id``, or the one named by ``image_column``), an optional ``split`` column (``train``,
``valid``, ``test`` or 0, 1, 2; without it every row is train) and attribute columns holding 0/1 or
-1/1. Column names must be distinct, with one image path column (pass ``image_column`` to pick one
of several). Paths are relative to ``root`` (default: the CSV's folder) and must stay inside it,
symlinks included; no two rows may name the same file. Images get the same crop and resize as CelebA
(:func:`hpnet.data.celeba.load_image`). Aligned faces may give their five landmarks in the ten columns
of CelebA's landmark file (``lefteye_x`` ... ``rightmouth_y``, pixels of the image file): they are no
attributes, and they place each face's parts (:mod:`hpnet.data.landmarks`).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpnet.data.base import MultiLabelDataset
from hpnet.data.celeba import (
    SPLITS,
    check_header,
    check_image_size,
    check_max_images,
    labels_array,
    load_image,
    parse_labels,
    parse_split,
    read_csv_rows,
    select_attributes,
)
from hpnet.data.landmarks import LANDMARK_COLUMNS, crop_normalise
from hpnet.errors import HPNetError

IMAGE_COLUMNS = ("image", "path", "file", "filename", "image_id")
SPLIT_VALUES = {"train": 0, "valid": 1, "test": 2, "0": 0, "1": 1, "2": 2}


def _check_header(header: list[str], where: str) -> None:
    """Every column named, and each name once (a second ``image`` or ``split`` column is no attribute)."""
    unnamed = next((i for i, name in enumerate(header, start=1) if not name), None)
    if unnamed is not None:
        raise HPNetError(f"{where}: column {unnamed} of the header has no name")
    check_header(header, where, "columns")


def _image_column(header: list[str], given: str | None, csv_path: Path, where: str) -> int:
    if given is not None and given not in header:
        raise HPNetError(f"{csv_path}: image column {given!r} is not in the header ({', '.join(header)})")
    found = [header.index(given)] if given is not None else [i for i, c in enumerate(header) if c in IMAGE_COLUMNS]
    if not found:
        raise HPNetError(f"{csv_path}: no image path column: expected one of {', '.join(IMAGE_COLUMNS)} "
                         f"(or pass image_column); the header has {', '.join(header)}")
    if len(found) > 1:
        a, b = found[:2]
        raise HPNetError(f"{where}: two image path columns, {header[a]!r} (column {a + 1}) and {header[b]!r} "
                         f"(column {b + 1}); pass image_column to pick one")
    return found[0]


def _resolve_inside(value: str, root: Path, where: str) -> Path:
    """``root / value`` resolved (symlinks followed); it must stay inside ``root``."""
    if not value:
        raise HPNetError(f"{where}: empty image path")
    path = (root / value).resolve()
    if not path.is_relative_to(root):
        raise HPNetError(f"{where}: image path {value!r} resolves outside the data root {root}")
    return path


def _listed_once(path: Path, value: str, where: str, number: int, lines: dict[Path, int]) -> Path:
    """``path``, recorded in ``lines`` as named on line ``number``; a file an earlier row named is refused."""
    first = lines.setdefault(path, number)
    if first != number:
        raise HPNetError(f"{where}: image path {value!r} names the same file as line {first}; "
                         f"each image must appear once")
    return path


def _landmark_columns(header: list[str], where: str) -> list[int]:
    """The ten landmark columns, in LANDMARK_COLUMNS order; none, or one line naming those missing."""
    present = [name for name in LANDMARK_COLUMNS if name in header]
    if present and len(present) != len(LANDMARK_COLUMNS):
        missing = [name for name in LANDMARK_COLUMNS if name not in header]
        raise HPNetError(f"{where}: landmark columns {', '.join(missing)} are missing (give all ten or none)")
    return [header.index(name) for name in present]


def _coordinate(value: str, column: str, where: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not np.isfinite(number):
        raise HPNetError(f"{where}: column {column}: landmark coordinate {value!r} is not a number")
    return number


def _crop_landmarks(marks: list[list[float]], paths: list[Path]) -> torch.Tensor:
    """Pixel landmarks of each image file -> (n, 5, 2) in [0, 1] of its central square crop."""
    sizes = np.array([_image_size(p) for p in paths], np.float64).reshape(-1, 2)
    points = np.asarray(marks, np.float64).reshape(-1, 5, 2)
    return torch.from_numpy(crop_normalise(points, sizes[:, 0], sizes[:, 1]).astype(np.float32))


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise HPNetError(f"image file not found: {path}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise HPNetError(f"cannot decode image {path}: {' '.join(str(exc).split())}") from exc


def _split_code(value: str, where: str) -> int:
    code = SPLIT_VALUES.get(value.lower())
    if code is None:
        raise HPNetError(f"{where}: split {value!r} is not train, valid or test (or 0, 1, 2)")
    return code


class CSVDataset(MultiLabelDataset):
    """A multi-label image set from a CSV file (see the module docstring for the format).

    Args:
        csv_path: the CSV file.
        root: folder the image paths are relative to (default: the CSV's folder).
        split: ``"train"``, ``"valid"``, ``"test"``, ``"all"`` or a list of them.
        image_size: side ``S`` of the square images returned.
        attributes: attribute columns to keep, in this order (default: all, in file order).
        max_images: keep only the first N rows of the split, in file order.
        image_column: the image path column, when not one of the usual names.

    Items are ``(image, target)``: ``image`` uint8 ``(3, S, S)``, ``target`` float32 ``(K,)`` in {0, 1}.
    """

    def __init__(self, csv_path: str | Path, root: str | Path | None = None, split: str | Sequence[str] = "train",
                 image_size: int = 64, attributes: Sequence[str] | None = None, max_images: int | None = None,
                 image_column: str | None = None):
        self.image_size = check_image_size(image_size)
        self.max_images = check_max_images(max_images)
        self.splits = parse_split(split)
        self.csv_path = Path(csv_path).expanduser()
        if not self.csv_path.is_file():
            raise HPNetError(f"CSV file not found: {self.csv_path}")
        self.root = Path(root).expanduser() if root is not None else self.csv_path.parent
        if not self.root.is_dir():
            raise HPNetError(f"image root folder not found: {self.root}")
        rows = read_csv_rows(self.csv_path)
        if not rows:
            raise HPNetError(f"{self.csv_path}: empty file, expected a header row")
        if len(rows) == 1:
            raise HPNetError(f"{self.csv_path}: no image rows after the header (line {rows[0][0]})")
        self._parse(rows, attributes, image_column)

    def _parse(self, rows: list[tuple[int, list[str]]], attributes: Sequence[str] | None,
               image_column: str | None) -> None:
        header_line, header = rows[0]
        at_header = f"{self.csv_path}: line {header_line}"
        _check_header(header, at_header)
        image_col = _image_column(header, image_column, self.csv_path, at_header)
        split_col = header.index("split") if "split" in header and image_column != "split" else None
        mark_cols = _landmark_columns(header, at_header)
        label_cols = [i for i in range(len(header)) if i not in (image_col, split_col, *mark_cols)]
        names = [header[i] for i in label_cols]
        if not names:
            raise HPNetError(f"{self.csv_path}: no attribute columns besides {', '.join(header)}")
        chosen = select_attributes(names, attributes, self.csv_path)
        wanted = {SPLITS.index(s) for s in self.splits}
        columns, root = [names[c] for c in chosen], self.root.resolve()
        paths, labels, lines, marks = [], [], {}, []
        for number, fields in rows[1:]:  # every row is checked, whichever split is kept
            where = f"{self.csv_path}: line {number}"
            if len(fields) != len(header):
                raise HPNetError(f"{where}: expected {len(header)} fields, got {len(fields)}")
            code = _split_code(fields[split_col], where) if split_col is not None else 0
            label = parse_labels([fields[label_cols[c]] for c in chosen], columns, where)
            value = fields[image_col]
            path = _listed_once(_resolve_inside(value, root, where), value, where, number, lines)
            if code in wanted and len(paths) != self.max_images:
                labels.append(label)
                paths.append(path)
                if mark_cols:
                    marks.append([_coordinate(fields[i], header[i], where) for i in mark_cols])
        self.total = len(rows) - 1
        self.has_split_column = split_col is not None
        self.image_column = header[image_col]
        self.attribute_names = [names[c] for c in chosen]
        self.paths = paths
        self.targets = torch.from_numpy(labels_array(labels, len(chosen)).astype(np.float32))
        self.landmarks = _crop_landmarks(marks, paths) if mark_cols else None
        self.landmark_source = f"{self.csv_path.name} (landmark columns)"

    def image(self, index: int) -> torch.Tensor:  # (3, S, S) uint8
        return load_image(self.paths[index], self.image_size)

    def empty_message(self) -> str:
        """One line telling why this split has no images and what to do."""
        why = "" if self.has_split_column else " (it has no split column, so every row is train)"
        return (f"split {'+'.join(self.splits)} of {self.csv_path} has no images, 0 of {self.total} rows"
                f"{why}; pick another split or add a split column")

    def require_nonempty(self) -> "CSVDataset":
        if len(self) == 0:
            raise HPNetError(self.empty_message())
        return self

    def source_description(self) -> dict[str, Any]:
        """What the items depend on, for :func:`hpnet.data.cache.cache_key`."""
        return {"source": "csv", "csv": str(self.csv_path.resolve()), "root": str(self.root.resolve()),
                "image_column": self.image_column, "split": list(self.splits), "image_size": self.image_size,
                "attributes": self.attribute_names, "max_images": self.max_images}

    def source_files(self) -> list[Path]:
        return [self.csv_path]

    def __repr__(self) -> str:
        return (f"CSVDataset({str(self.csv_path)!r}, split={'+'.join(self.splits)}, n={len(self)}, "
                f"image_size={self.image_size}, attributes={len(self.attribute_names)})")
