"""Data sources behind one interface: ``DataSpec`` describes a data set, ``load_split`` gives a split.

Every source gives the same :class:`~hpnet.data.base.MultiLabelDataset` (uint8 images, 0/1 targets):
synthetic faces (built in), CelebA from a local folder, and any multi-label CSV; :data:`SOURCES` is
their registry (``hpnet train --dataset NAME`` lists it). Sources that decode image files are cached
once as a uint8 array (``cache_dir``) so that epochs never decode JPEGs.

To add a source: a dataset class (``MultiLabelDataset``) in a module of its own, one
``SOURCES.register`` entry below, and its test.

Splits are "train", "valid" and "test". When a source has no validation images (the real CelebA
sample, a CSV without a split column) the last ``valid_fraction`` of the training images is held
out as "valid" and left out of "train".
"""
from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .. import checks
from ..errors import HPNetError
from ..registry import Registry
from .base import ArrayDataset, MultiLabelDataset

SPLITS = ("train", "valid", "test")
SYNTHETIC_TRAIN = 8000
MAX_IMAGE_SIZE = 2048  # a larger side is a typo far more often than a wish (8,000 such images: 100 GB)


@dataclass(frozen=True)
class Source:
    """A data source: ``open(spec, split)`` gives the split's images. ``files``: the images are
    decoded from files (cached once as uint8; a missing valid split is held out of train), else
    they are drawn in memory."""

    open: Callable[["DataSpec", str], MultiLabelDataset]
    files: bool
    help: str


SOURCES: Registry[Source] = Registry("--dataset")


@dataclass
class DataSpec:
    """Where the images come from and how they are prepared; saved in every run folder."""

    dataset: str = field(default="synthetic", metadata={"flag": "--dataset", "choices": SOURCES, "help": "{choices}"})
    root: str | None = field(default=None, metadata={
        "flag": "--root",
        "help": "CelebA folder (holding celeba/ or the celeba folder itself), or the CSV file / its folder"})
    image_size: int = field(default=64, metadata={
        "flag": "--image-size", "help": "images are resized to S x S (default {default})"})
    max_images: int | None = field(default=None, metadata={
        "flag": "--max-images", "help": "use at most N images per split"})
    attributes: list[str] | None = field(default=None, metadata={
        "flag": "--attributes", "help": "comma-separated attribute subset"})
    seed: int = 0                    # the command line gives the training seed
    valid_fraction: float = field(default=0.1, metadata={
        "flag": "--valid-fraction",
        "help": "share of training images held out for validation when the data has no valid split"})
    cache_dir: str | None = field(default=None, metadata={
        "flag": "--cache-dir",
        "help": "where decoded images are cached (default $HPNET_CACHE or ~/.cache/hpnet; 'none' disables)"})

    def __post_init__(self) -> None:
        source = SOURCES.get(self.dataset)
        self.root = checks.path(self.root, "--root", optional=True)
        if source.files and not self.root:
            raise HPNetError(f"--dataset {self.dataset} needs --root (the folder holding the data)")
        if checks.count(self.image_size, "--image-size", smallest=8) > MAX_IMAGE_SIZE:
            raise HPNetError(f"--image-size must be at most {MAX_IMAGE_SIZE}, got {self.image_size}")
        checks.count(self.max_images, "--max-images", optional=True)
        if self.attributes is not None:
            self.attributes = checks.names(self.attributes, "--attributes")
        checks.seed(self.seed, "--seed")
        if checks.number(self.valid_fraction, "--valid-fraction", 0, 1) >= 1:
            raise HPNetError(f"--valid-fraction must be in [0, 1), got {self.valid_fraction}")
        self.cache_dir = checks.path(self.cache_dir, "--cache-dir", optional=True)
        if self.root:
            self.root = str(Path(self.root).expanduser().resolve())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "data settings") -> "DataSpec":
        """The spec stored as ``d`` (``source`` names the file in errors)."""
        return checks.from_dict(cls, d, source)


def parse_splits(split: str | list[str]) -> list[str]:
    """"train", "valid", "test" or several, comma separated (or a list): the split names."""
    if not isinstance(split, (str, list, tuple)):
        raise HPNetError(f"--split must be one or more of {', '.join(SPLITS)} (comma separated), got {split!r}")
    names = split.split(",") if isinstance(split, str) else list(split)
    names = [s.strip() for s in names if isinstance(s, str) and s.strip()]
    bad = [s for s in names if s not in SPLITS]
    if bad or not names:
        raise HPNetError(f"--split must be one or more of {', '.join(SPLITS)} (comma separated), got {split!r}")
    return names


def load_split(spec: DataSpec, split: str | list[str], progress: bool = True) -> MultiLabelDataset:
    """The images of one split (or several, concatenated, e.g. "valid,test")."""
    names = parse_splits(split)
    parts = [_load_one(spec, s, progress) for s in names]
    if len(parts) == 1:
        return parts[0]
    return ArrayDataset(torch.cat([p.images for p in parts]), torch.cat([p.targets for p in parts]),
                        parts[0].attribute_names)


def require_nonempty(data: MultiLabelDataset, spec: DataSpec, split: str,
                     hint: str = "choose another with --split") -> MultiLabelDataset:
    """``data``, or one line saying that this split of the data is empty, and what to do (``hint``)."""
    if len(data) == 0:
        where = f" at {spec.root}" if spec.root else ""
        raise HPNetError(f"split {split!r} of the {spec.dataset} data{where} is empty; {hint}")
    return data


# ----------------------------------------------------------------------------------------------


def _load_one(spec: DataSpec, split: str, progress: bool) -> ArrayDataset:
    source = SOURCES.get(spec.dataset)
    if not source.files:
        return source.open(spec, split)
    from .landmarks import with_landmarks  # aligned faces with landmarks know where their parts lie
    if split == "test" or not _holds_out_valid(spec):
        opened = source.open(spec, split)
        return with_landmarks(_cached(spec, opened, progress), opened)
    opened = source.open(spec, "train")
    train = with_landmarks(_cached(spec, opened, progress), opened)  # valid is the tail of train
    cut = len(train) - int(round(len(train) * spec.valid_fraction))
    return train.subset(torch.arange(cut) if split == "train" else torch.arange(cut, len(train)))


def default_eval_split(spec: DataSpec) -> str:
    """The split evaluations use by default: "test", or the held-out "valid" part when the source
    has no test images (as in a train-only CelebA folder)."""
    return "test" if len(load_split(spec, "test", progress=False)) else "valid"


def _synthetic(spec: DataSpec, split: str) -> ArrayDataset:
    n_train = spec.max_images or SYNTHETIC_TRAIN
    n = n_train if split == "train" else min(1000, max(64, n_train // 8))
    seed = spec.seed * 3 + SPLITS.index(split)  # distinct, deterministic image sets per split
    attributes = tuple(spec.attributes) if spec.attributes is not None else None
    return _generate_once(n, spec.image_size, seed, attributes)


@functools.lru_cache(maxsize=3)
def _generate_once(n: int, image_size: int, seed: int, attributes: tuple[str, ...] | None) -> ArrayDataset:
    """The synthetic split, drawn once per process (8,000 64x64 faces take ~6 s); every step of a
    pipeline (train, analyse, prune, ...) then shares it. Data sets are never modified in place."""
    from .synthetic import generate
    return generate(n, image_size=image_size, seed=seed, attributes=list(attributes) if attributes is not None else None)


def _celeba(spec: DataSpec, split: str) -> MultiLabelDataset:
    from .celeba import CelebA
    return CelebA(spec.root, split=split, image_size=spec.image_size, attributes=spec.attributes,
                  max_images=spec.max_images)


def _csv(spec: DataSpec, split: str) -> MultiLabelDataset:
    from .csvdata import CSVDataset
    root = Path(spec.root)
    csv_path = root if root.is_file() else _find_csv(root)
    return CSVDataset(csv_path, split=split, image_size=spec.image_size, attributes=spec.attributes,
                      max_images=spec.max_images)


SOURCES.register("synthetic")(Source(_synthetic, False, "synthetic faces, built in (25 CelebA-named attributes)"))
SOURCES.register("celeba")(Source(_celeba, True, "CelebA from a local folder (torchvision or CSV layout)"))
SOURCES.register("csv")(Source(_csv, True, "any multi-label CSV of image paths and 0/1 columns"))


def _find_csv(root: Path) -> Path:
    if not root.is_dir():
        raise HPNetError(f"{root}: file or folder not found")
    found = sorted(root.glob("*.csv"))
    if len(found) != 1:
        raise HPNetError(f"{root}: expected exactly one .csv label file, found {len(found)}; "
                         f"pass the CSV file itself as --root")
    return found[0]


def _holds_out_valid(spec: DataSpec) -> bool:
    """True when the source has no validation images of its own."""
    return spec.valid_fraction > 0 and len(SOURCES.get(spec.dataset).open(spec, "valid")) == 0


def _cached(spec: DataSpec, source: MultiLabelDataset, progress: bool) -> ArrayDataset:
    from .cache import cache_dataset, cache_key, default_cache_dir
    if len(source) == 0:
        size = spec.image_size
        return ArrayDataset(torch.zeros(0, 3, size, size, dtype=torch.uint8), source.targets,
                            source.attribute_names)
    if spec.cache_dir == "none":
        return _decode_all(source, progress)
    cache_dir = Path(spec.cache_dir or os.environ.get("HPNET_CACHE") or default_cache_dir())
    return cache_dataset(source, cache_dir, cache_key(source), progress=progress)


def _decode_all(source: MultiLabelDataset, progress: bool) -> ArrayDataset:
    from ..progress import bar
    images = [source.image(i) for i in bar(range(len(source)), desc="decoding", enabled=progress)]
    return ArrayDataset(torch.stack(images), source.targets, source.attribute_names)
