"""The image cache: round trip equals direct loading, reuse without decoding, invalidation, atomic writes."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hpnet.data import cache as cache_module
from hpnet.data.base import ArrayDataset
from hpnet.data.cache import cache_dataset, cache_key
from hpnet.data.celeba import CelebA
from hpnet.errors import HPNetError


class Counting(CelebA):
    """CelebA that counts decodes, and can fail at a given one."""

    decoded = 0
    fail_at: int | None = None

    def image(self, index: int) -> torch.Tensor:
        if index == self.fail_at:
            raise KeyboardInterrupt  # a run killed midway
        type(self).decoded += 1
        return super().image(index)


@pytest.fixture
def counting(fake_celeba):
    Counting.decoded, Counting.fail_at = 0, None
    return Counting(fake_celeba, split="all", image_size=16, attributes=["Smiling", "Male"])


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


def direct(ds) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([ds[i][0] for i in range(len(ds))]), ds.targets


def only_folder(cache_dir: Path) -> Path:
    (folder,) = cache_dir.iterdir()
    return folder


def test_round_trip_equals_direct_loading(counting, tmp_path):
    cached = cache_dataset(counting, tmp_path / "cache", cache_key(counting), progress=False)
    images, targets = direct(counting)
    assert isinstance(cached, ArrayDataset) and cached.attribute_names == ["Smiling", "Male"]
    assert cached.images.dtype == torch.uint8 and torch.equal(cached.images, images)
    assert torch.equal(cached.targets, targets) and len(cached) == 24
    folder = only_folder(tmp_path / "cache")
    assert sorted(p.name for p in folder.iterdir()) == ["images.npy", "meta.json", "targets.npy"]
    meta = json.loads((folder / "meta.json").read_text())
    assert (meta["count"], meta["image_size"], meta["key"]) == (24, 16, cache_key(counting))


def test_second_call_reuses_without_decoding(counting, cache_dir):
    key = cache_key(counting)
    first = cache_dataset(counting, cache_dir, key, progress=False)
    Counting.decoded = 0
    again = cache_dataset(counting, cache_dir, key, progress=False)
    assert Counting.decoded == 0
    assert torch.equal(again.images, first.images) and torch.equal(again.targets, first.targets)


def test_workers_give_the_same_cache(counting, tmp_path):
    one = cache_dataset(counting, tmp_path / "a", "k", progress=False, workers=0)
    two = cache_dataset(counting, tmp_path / "b", "k", progress=False, workers=2)
    assert torch.equal(one.images, two.images) and torch.equal(one.targets, two.targets)


def test_bad_image_in_a_worker_is_one_line(fake_celeba, cache_dir):
    (fake_celeba / "img_align_celeba" / "000003.jpg").write_bytes(b"garbage")
    ds = CelebA(fake_celeba, image_size=8)
    with pytest.raises(HPNetError, match=r"^cannot decode image .*000003.jpg[^\n]*$"):
        cache_dataset(ds, cache_dir, "k", progress=False, workers=2)
    assert list(cache_dir.iterdir()) == []


def test_key_changes_with_the_source(fake_celeba):
    key = cache_key(CelebA(fake_celeba))
    assert cache_key(CelebA(fake_celeba)) == key
    for kwargs in [{"image_size": 32}, {"split": "all"}, {"attributes": ["Male"]}, {"max_images": 3}]:
        assert cache_key(CelebA(fake_celeba, **kwargs)) != key
    assert cache_key(CelebA(fake_celeba.parent)) == key  # the same folder, named another way
    labels = fake_celeba / "list_attr_celeba.txt"
    os.utime(labels, ns=(labels.stat().st_atime_ns, labels.stat().st_mtime_ns + 10**9))
    assert cache_key(CelebA(fake_celeba)) != key


def test_changed_key_rebuilds(counting, cache_dir):
    cache_dataset(counting, cache_dir, "one", progress=False)
    Counting.decoded = 0
    cache_dataset(counting, cache_dir, "two", progress=False)
    assert Counting.decoded == 24 and len(list(cache_dir.iterdir())) == 2


def test_mismatched_or_incomplete_cache_is_rebuilt(counting, cache_dir):
    cache_dataset(counting, cache_dir, "k", progress=False)
    folder = only_folder(cache_dir)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "count": 23}))
    Counting.decoded = 0
    cache_dataset(counting, cache_dir, "k", progress=False)
    assert Counting.decoded == 24
    (folder / "meta.json").unlink()
    np.save(folder / "images.npy", np.zeros((2, 3, 16, 16), np.uint8))
    Counting.decoded = 0
    again = cache_dataset(counting, cache_dir, "k", progress=False)
    assert Counting.decoded == 24 and torch.equal(again.images, direct(counting)[0])


def test_killed_writer_leaves_no_trusted_cache(counting, cache_dir):
    Counting.fail_at = 10
    with pytest.raises(KeyboardInterrupt):
        cache_dataset(counting, cache_dir, "k", progress=False)
    assert list(cache_dir.iterdir()) == []  # no final folder, and the temporary one is gone
    Counting.fail_at = None
    assert len(cache_dataset(counting, cache_dir, "k", progress=False)) == 24


def test_no_final_file_before_the_rename(counting, cache_dir, monkeypatch):
    seen = []

    def dying_rename(src, dst):
        seen.append(sorted(p.name for p in Path(src).iterdir()))
        raise OSError("killed before rename")

    monkeypatch.setattr(cache_module.os, "rename", dying_rename)
    with pytest.raises(OSError, match="killed before rename"):
        cache_dataset(counting, cache_dir, "k", progress=False)
    assert seen == [["images.npy", "meta.json", "targets.npy"]]  # everything was written, under a temp name
    assert list(cache_dir.iterdir()) == []


def test_leftover_temp_folder_is_not_trusted(counting, tmp_path):
    final = tmp_path / "cache"
    cache_dataset(counting, final, "k", progress=False)
    name = only_folder(final).name
    os.rename(final / name, final / f".{name}.tmp-dead")  # as if a killed run left it unrenamed
    Counting.decoded = 0
    cache_dataset(counting, final, "k", progress=False)
    assert Counting.decoded == 24


def test_any_dataset_with_a_description_key(cache_dir):
    ds = ArrayDataset(torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8), torch.ones(5, 2), ["a", "b"])
    key = cache_key({"source": "synthetic", "seed": 0, "n": 5})
    assert key == cache_key({"n": 5, "seed": 0, "source": "synthetic"})
    cached = cache_dataset(ds, cache_dir, key, progress=False)
    assert torch.equal(cached.images, ds.images) and cached.attribute_names == ["a", "b"]


def test_bad_cache_input(tmp_path, fake_celeba):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(HPNetError, match=r"cannot write the image cache in .*a_file"):
        cache_dataset(CelebA(fake_celeba, max_images=1), blocker / "cache", "k", progress=False)
    partition = fake_celeba / "list_eval_partition.txt"
    partition.write_bytes(partition.read_bytes().replace(b" 1\r\n", b" 0\r\n"))
    with pytest.raises(HPNetError, match=r"nothing to cache: CelebA split valid in .* has no images"):
        cache_dataset(CelebA(fake_celeba, split="valid"), tmp_path / "c", "k", progress=False)


def test_a_killed_build_is_cleaned_up_once_stale(counting, cache_dir):
    """A SIGKILLed build leaves its temporary folder; the next build of that cache removes it once
    it is an hour old, and leaves a younger one (maybe another process building now) alone."""
    name = hashlib.sha256(b"k").hexdigest()[:16]
    cache_dir.mkdir()
    stale, young = cache_dir / f".{name}.tmp-dead", cache_dir / f".{name}.tmp-busy"
    for d in (stale, young):
        d.mkdir()
        (d / "images.npy").write_bytes(b"partial")
    old = os.stat(stale).st_mtime - cache_module.STALE_SECONDS - 10
    os.utime(stale, (old, old))
    cache_dataset(counting, cache_dir, "k", progress=False)
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted([name, young.name])
