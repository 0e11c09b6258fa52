"""A one-time cache of decoded, resized images, so later epochs and runs skip JPEG decoding.

``cache_dataset(dataset, cache_dir, key)`` decodes every image once into
``cache_dir/<hash of key>/`` as ``images.npy`` (uint8 ``(N, 3, S, S)``), ``targets.npy`` (float32
``(N, K)``) and ``meta.json``. The three are written into a temporary folder next to it and the folder
is renamed into place last, so a run killed midway never leaves a cache that a later run trusts. Later
calls with the same key check ``meta.json`` and memory-map the arrays: nothing is decoded again.

The key should describe the source: :func:`cache_key` builds one from a dataset's
``source_description()`` and the size and mtime of its label files, so a changed source gets a new
cache. The cache folder belongs outside the data folder, which may be read-only.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from hpnet.data.base import ArrayDataset, MultiLabelDataset
from hpnet.errors import HPNetError
from hpnet.progress import bar

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/hpnet``, else ``~/.cache/hpnet``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "hpnet"


def _stamp(path: str | Path) -> list[Any]:
    path = Path(path).resolve()
    try:
        st = path.stat()
    except OSError:
        return [str(path), None, None]
    return [str(path), st.st_size, st.st_mtime_ns]


def cache_key(source: Mapping[str, Any] | MultiLabelDataset, files: Iterable[str | Path] = ()) -> str:
    """A key for :func:`cache_dataset`: the source description plus path, size and mtime of each file.

    ``source`` is a JSON-able description, or a dataset with ``source_description()`` and
    ``source_files()`` (CelebA, CSVDataset): root, layout, split, image size, attributes, max_images and
    its label files.
    """
    if isinstance(source, MultiLabelDataset):
        if not hasattr(source, "source_description"):
            raise TypeError(f"{type(source).__name__} has no source_description(): pass a description dict")
        files = [*source.source_files(), *files]
        source = source.source_description()
    return json.dumps({"source": dict(source), "files": [_stamp(f) for f in files]},
                      sort_keys=True, separators=(",", ":"))


class _Guarded(Dataset):
    """Returns a bad item's HPNetError as text, so a worker's error reaches the user as one line."""

    def __init__(self, dataset: MultiLabelDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, torch.Tensor | None, str | None]:
        try:
            image, target = self.dataset[index]
        except HPNetError as exc:
            return None, None, str(exc)
        return image, target, None


def _collate(batch: list[tuple[Any, Any, str | None]]) -> tuple[torch.Tensor, torch.Tensor, str | None]:
    """Stack in the worker: one shared-memory transfer per batch, not one per image."""
    error = next((e for _, _, e in batch if e is not None), None)
    if error is not None:
        return torch.empty(0), torch.empty(0), error
    return torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch]), None


def _items(dataset: MultiLabelDataset, workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if workers == 0:
        yield from (dataset[i] for i in range(len(dataset)))
        return
    loader = DataLoader(_Guarded(dataset), batch_size=64, num_workers=workers, collate_fn=_collate)
    for images, targets, error in loader:
        if error is not None:
            raise HPNetError(error)
        yield from zip(images, targets)


def _meta(dataset: MultiLabelDataset, key: str) -> dict[str, Any]:
    if len(dataset) == 0:
        why = dataset.empty_message() if hasattr(dataset, "empty_message") else "the dataset has no images"
        raise HPNetError(f"nothing to cache: {why}")
    size = getattr(dataset, "image_size", None) or int(dataset.image(0).shape[-1])
    return {"version": CACHE_VERSION, "key": key, "count": len(dataset), "image_size": size,
            "attribute_names": list(dataset.attribute_names)}


def _load(folder: Path, meta: dict[str, Any]) -> ArrayDataset | None:
    """The cache in ``folder`` if it is complete and matches ``meta``, else None."""
    n, s, k = meta["count"], meta["image_size"], len(meta["attribute_names"])
    try:
        if json.loads((folder / "meta.json").read_text()) != meta:
            return None
        images = np.load(folder / "images.npy", mmap_mode="c")  # copy-on-write: the file stays untouched
        targets = np.load(folder / "targets.npy")
    except (OSError, ValueError):
        return None
    if images.dtype != np.uint8 or images.shape != (n, 3, s, s) or targets.shape != (n, k):
        return None
    return ArrayDataset(torch.from_numpy(images), torch.from_numpy(targets), meta["attribute_names"])


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write(dataset: MultiLabelDataset, folder: Path, meta: dict[str, Any], progress: bool, workers: int) -> None:
    n, s = meta["count"], meta["image_size"]
    images = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8, shape=(n, 3, s, s))
    targets = np.empty((n, len(meta["attribute_names"])), dtype=np.float32)
    for i, (image, target) in enumerate(bar(_items(dataset, workers), total=n, desc="caching images",
                                            enabled=progress)):
        images[i] = image.numpy()
        targets[i] = target.numpy()
    images.flush()
    del images
    np.save(folder / "targets.npy", targets)
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    for name in ("images.npy", "targets.npy", "meta.json"):
        _fsync(folder / name)


def _commit(tmp: Path, folder: Path) -> None:
    """Move the finished ``tmp`` folder to ``folder`` in one rename."""
    if folder.exists():
        shutil.rmtree(folder)  # a stale or unreadable cache; readers that mapped it keep their copy
    try:
        os.rename(tmp, folder)
    except OSError:
        if not folder.is_dir():  # else another process committed the same cache meanwhile
            raise
    _fsync(folder.parent)


STALE_SECONDS = 3600


def _remove_stale_builds(folder: Path) -> None:
    """Remove the temporary folders of builds of this cache that were killed (untouched for an
    hour); a build running now in another process is younger and stays."""
    now = time.time()
    for stale in folder.parent.glob(f".{folder.name}.tmp-*"):
        try:
            if now - stale.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass


def cache_dataset(dataset: MultiLabelDataset, cache_dir: str | Path, key: str, progress: bool = True,
                  workers: int | None = None) -> ArrayDataset:
    """Decode ``dataset`` once into ``cache_dir`` (or reuse the cache for ``key``); returns it memory-mapped.

    ``workers`` decoding processes (default: 2 for 256 images or more, else none).
    """
    folder = Path(cache_dir).expanduser() / hashlib.sha256(key.encode()).hexdigest()[:16]
    meta = _meta(dataset, key)
    cached = _load(folder, meta)
    if cached is not None:
        return cached
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(folder)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    except OSError as exc:
        raise HPNetError(f"cannot write the image cache in {folder.parent}: {exc.strerror}") from exc
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(dataset) >= 256 else 0
    try:
        _write(dataset, tmp, meta, progress, workers)
        _commit(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    loaded = _load(folder, meta)
    if loaded is None:
        raise HPNetError(f"the image cache in {folder} could not be read back")
    return loaded
