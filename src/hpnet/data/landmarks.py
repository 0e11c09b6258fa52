"""Five face landmarks of aligned faces, for the face parts of :mod:`hpnet.data.layout`.

CelebA's aligned images (``img_align_celeba``, 178 x 218) were aligned on the eyes, so eyes, nose and
mouth corners sit at nearly fixed positions. Their landmarks come from, in this order:

- ``list_landmarks_align_celeba.txt`` beside the attribute file, in its official format: a count
  line, the header ``lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y
  rightmouth_x rightmouth_y``, then ``000001.jpg 69 109 106 113 77 142 73 152 108 154`` rows (pixels of
  the 178 x 218 frame; CRLF line ends allowed); or its CSV copy ``list_landmarks_align_celeba.csv``
  (``image_id,lefteye_x,...``);
- else the mean positions :data:`MEAN_LANDMARKS` for every image.

A CSV data set (:mod:`hpnet.data.csvdata`) may give the same ten columns, in pixels of each image file.
Landmarks are kept as (x, y) in [0, 1] of the square crop the images are cut to (their central square,
as :func:`hpnet.data.celeba.load_image` cuts it), so they hold at any image size.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from hpnet.data.base import ArrayDataset
from hpnet.data.labelfiles import check_header, read_csv_rows, read_text
from hpnet.errors import HPNetError

from .layout import LAYOUT_PARTS, layout_parts

LANDMARK_COLUMNS: tuple[str, ...] = ("lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
                                     "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y")
LANDMARK_FILES = {"txt": "list_landmarks_align_celeba.txt", "csv": "list_landmarks_align_celeba.csv"}
CELEBA_FRAME = (178, 218)   # width, height of img_align_celeba, the frame the landmark files use
# Mean landmarks of img_align_celeba in that frame (left eye, right eye, nose, left and right mouth
# corner), as quoted beside the face alignment code of ALAE (Pidhorskyi, Adjeroh and Doretto,
# "Adversarial Latent Autoencoders", CVPR 2020; github.com/podgorskiy/ALAE, align_faces.py):
# "69 111 108 111 88 136 72 152 105 152".
MEAN_LANDMARKS = np.array([[69, 111], [108, 111], [88, 136], [72, 152], [105, 152]], np.float64)
MEAN_SOURCE = "mean positions of img_align_celeba (ALAE, Pidhorskyi et al. 2020)"


def crop_normalise(points: np.ndarray, width: np.ndarray | float, height: np.ndarray | float) -> np.ndarray:
    """Pixel landmarks (n, 5, 2) of images width x height -> (x, y) in [0, 1] of their central square."""
    width, height = np.broadcast_to(width, points.shape[:1]), np.broadcast_to(height, points.shape[:1])
    side = np.minimum(width, height).astype(np.float64)
    left, top = np.round((width - side) / 2), np.round((height - side) / 2)
    offset = np.stack([left, top], axis=1)[:, None, :]
    return (points - offset) / side[:, None, None]


def read_landmarks(path: Path) -> dict[str, np.ndarray]:
    """image name -> (5, 2) pixel landmarks, from the official text file or its CSV copy; one line
    naming the file and line for anything else."""
    if path.suffix == ".csv":
        rows = read_csv_rows(path)
        if not rows:
            raise HPNetError(f"{path}: empty file, expected the header image_id,{','.join(LANDMARK_COLUMNS)}")
        (number, header), body = rows[0], rows[1:]
        _check_columns(header[1:], f"{path}: line {number}")
    else:
        lines = read_text(path).splitlines()
        if not lines or not lines[0].strip().isascii() or not lines[0].strip().isdigit():
            raise HPNetError(f"{path}: line 1: expected the image count, got {(lines or [''])[0]!r}")
        _check_columns(lines[1].split() if len(lines) > 1 else [], f"{path}: line 2")
        body = [(n, line.split()) for n, line in enumerate(lines[2:], start=3) if line.strip()]
        if int(lines[0]) != len(body):
            raise HPNetError(f"{path}: the count line says {int(lines[0])} images but the file has {len(body)} rows")
    out: dict[str, np.ndarray] = {}
    for number, fields in body:
        if len(fields) != 11:
            raise HPNetError(f"{path}: line {number}: expected an image name and 10 coordinates, got {len(fields) - 1}")
        if fields[0] in out:
            raise HPNetError(f"{path}: line {number}: image {fields[0]} is listed again")
        out[fields[0]] = _coordinates(fields[1:], f"{path}: line {number}").reshape(5, 2)
    return out


def _check_columns(names: list[str], where: str) -> None:
    check_header(names, where, "names")
    if tuple(names) != LANDMARK_COLUMNS:
        raise HPNetError(f"{where}: expected the header {' '.join(LANDMARK_COLUMNS)}, got {' '.join(names)!r}")


def _coordinates(tokens: Sequence[str], where: str) -> np.ndarray:
    try:
        values = np.array([float(t) for t in tokens], np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_number(t))
        raise HPNetError(f"{where}: landmark coordinate {bad!r} is not a number") from None
    if not np.isfinite(values).all():
        raise HPNetError(f"{where}: a landmark coordinate is not finite")
    return values


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def celeba_landmarks(base: Path, files: Sequence[str]) -> tuple[torch.Tensor, str]:
    """Landmarks (n, 5, 2) in [0, 1] of the crop for the images ``files`` of the CelebA folder ``base``,
    and where they came from (a landmark file there, else the mean positions)."""
    path = next((base / name for name in LANDMARK_FILES.values() if (base / name).is_file()), None)
    if path is None:
        points = np.broadcast_to(MEAN_LANDMARKS, (len(files), 5, 2))
        return torch.from_numpy(crop_normalise(points, *CELEBA_FRAME).astype(np.float32)), MEAN_SOURCE
    table = read_landmarks(path)
    missing = next((f for f in files if f not in table), None)
    if missing is not None:
        raise HPNetError(f"{path}: no landmarks for image {missing}")
    points = np.stack([table[f] for f in files]) if files else np.zeros((0, 5, 2))
    return torch.from_numpy(crop_normalise(points, *CELEBA_FRAME).astype(np.float32)), path.name


class LandmarkFaces(ArrayDataset):
    """Aligned faces in memory with their five landmarks (n, 5, 2) in [0, 1] of the image, and the face
    parts placed from them (:func:`hpnet.data.layout.layout_parts`)."""

    parts = LAYOUT_PARTS

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, attribute_names: list[str],
                 landmarks: torch.Tensor, landmark_source: str):
        super().__init__(images, targets, attribute_names)
        if landmarks.shape != (images.shape[0], 5, 2):
            raise ValueError(f"landmarks shape {tuple(landmarks.shape)} does not match "
                             f"{images.shape[0]} images x 5 x 2")
        self.landmarks = landmarks.float()
        self.landmark_source = landmark_source

    def subset(self, indices: torch.Tensor) -> "LandmarkFaces":
        return LandmarkFaces(self.images[indices], self.targets[indices], self.attribute_names,
                             self.landmarks[indices], self.landmark_source)

    def part_masks(self, indices: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """float32 (n, P, S, S): the share of each pixel each part of :data:`LAYOUT_PARTS` covers."""
        points = self.landmarks if indices is None else self.landmarks[torch.as_tensor(indices).cpu()]
        return layout_parts(points.reshape(-1, 5, 2).numpy(), int(self.images.shape[-1]))


def with_landmarks(data: ArrayDataset, source: object) -> ArrayDataset:
    """``data`` as :class:`LandmarkFaces` when its ``source`` gives landmarks, else as it is."""
    landmarks = getattr(source, "landmarks", None)
    if landmarks is None:
        return data
    return LandmarkFaces(data.images, data.targets, data.attribute_names, landmarks,
                         getattr(source, "landmark_source", "landmarks"))
