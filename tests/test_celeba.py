"""CelebA dataset contract: fake folders in the exact real formats, every bad input, the real sample."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fakes import CELEBA_ATTRIBUTES, make_fake_celeba
from hpnet.data.celeba import CelebA, load_image
from hpnet.errors import HPNetError


def raw_labels(base: Path) -> dict[str, list[int]]:
    """An independent reading of list_attr_celeba.txt: image name -> its -1/1 values."""
    lines = (base / "list_attr_celeba.txt").read_bytes().decode().split("\r\n")
    return {t[0]: [int(v) for v in t[1:]] for t in (line.split() for line in lines[2:]) if t}


def edit_line(path: Path, number: int, new: str) -> None:
    """Replace line ``number`` (1-based) of a CRLF file."""
    lines = path.read_bytes().decode().split("\r\n")
    lines[number - 1] = new
    path.write_bytes("\r\n".join(lines).encode())


# lengths, splits, items

@pytest.mark.parametrize("split, n", [("train", 16), ("valid", 4), ("test", 4), ("all", 24), (["valid", "test"], 8)])
def test_lengths_per_split(fake_celeba, split, n):
    assert len(CelebA(fake_celeba, split=split)) == n


def test_root_is_parent_or_celeba_folder(fake_celeba):
    a, b = CelebA(fake_celeba, split="all"), CelebA(fake_celeba.parent, split="all")
    assert a.filenames == b.filenames and a.layout == b.layout == "txt"


def test_splits_together_equal_all(fake_celeba):
    parts = [CelebA(fake_celeba, split=s) for s in ("train", "valid", "test")]
    whole = CelebA(fake_celeba, split="all")
    assert sum((p.filenames for p in parts), []) == whole.filenames
    assert torch.equal(torch.cat([p.targets for p in parts]), whole.targets)
    assert CelebA(fake_celeba, split=["test", "valid"]).filenames == parts[1].filenames + parts[2].filenames


def test_item_types(fake_celeba):
    ds = CelebA(fake_celeba, image_size=32)
    image, target = ds[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32)
    assert target.dtype == torch.float32 and target.shape == (40,)
    assert set(ds.targets.unique().tolist()) == {0.0, 1.0}
    assert ds.attribute_names == CELEBA_ATTRIBUTES


def test_labels_match_file(fake_celeba):
    ds, raw = CelebA(fake_celeba, split="all"), raw_labels(fake_celeba)
    expected = torch.tensor([raw[f] for f in ds.filenames]).eq(1).float()
    assert torch.equal(ds.targets, expected)


def test_attribute_subset_order(fake_celeba):
    ds, raw = CelebA(fake_celeba, attributes=["Young", "Male", "Smiling"]), raw_labels(fake_celeba)
    assert ds.attribute_names == ["Young", "Male", "Smiling"]
    columns = [CELEBA_ATTRIBUTES.index(a) for a in ds.attribute_names]
    assert ds.targets[3].tolist() == [float(raw["000004.jpg"][c] == 1) for c in columns]


def test_max_images_takes_first_of_split(fake_celeba):
    ds = CelebA(fake_celeba, split="valid", max_images=2)
    assert ds.filenames == ["000017.jpg", "000018.jpg"]
    assert torch.equal(ds.targets, CelebA(fake_celeba, split="valid").targets[:2])
    assert len(CelebA(fake_celeba, max_images=100)) == 16


def test_layouts_give_identical_data(tmp_path):
    txt = CelebA(make_fake_celeba(tmp_path / "a", layout="txt"), split="all", image_size=16)
    csv = CelebA(make_fake_celeba(tmp_path / "b", layout="csv"), split="all", image_size=16)
    assert (txt.layout, csv.layout) == ("txt", "csv")
    assert txt.filenames == csv.filenames and txt.attribute_names == csv.attribute_names
    assert torch.equal(txt.targets, csv.targets)
    assert all(torch.equal(txt[i][0], csv[i][0]) for i in range(len(txt)))


def test_txt_layout_preferred_when_both(tmp_path):
    assert CelebA(make_fake_celeba(tmp_path, layout="both")).layout == "txt"


def test_kaggle_nested_image_folder(fake_celeba_csv):
    images = fake_celeba_csv / "img_align_celeba"
    shutil.move(images, fake_celeba_csv / "tmp")
    images.mkdir()
    shutil.move(fake_celeba_csv / "tmp", images / "img_align_celeba")
    assert CelebA(fake_celeba_csv, image_size=8)[0][0].shape == (3, 8, 8)


def test_zero_one_labels_accepted(fake_celeba):
    before = CelebA(fake_celeba, split="all").targets
    path = fake_celeba / "list_attr_celeba.txt"
    path.write_bytes(path.read_bytes().replace(b"-1", b" 0"))
    assert torch.equal(CelebA(fake_celeba, split="all").targets, before)


def test_empty_split_is_allowed_with_a_message(tmp_path):
    ds = CelebA(make_fake_celeba(tmp_path, n=6, partitions=(6, 0, 0)), split="valid")
    assert len(ds) == 0 and ds.targets.shape == (0, 40)
    with pytest.raises(HPNetError, match=r"CelebA split valid in .* has no images \(0 of the 6 listed"):
        ds.require_nonempty()


# the image transform

def banded(size: tuple[int, int], band: int) -> Image.Image:
    """Green, with red bands of ``band`` pixels at both ends of the long side (to be cropped away)."""
    w, h = size
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 1] = 255
    if w > h:
        a[:, :band] = a[:, w - band:] = (255, 0, 0)
    else:
        a[:band] = a[h - band:] = (255, 0, 0)
    return Image.fromarray(a)


@pytest.mark.parametrize("size, band", [((178, 218), 20), ((89, 109), 10), ((60, 40), 10)])
def test_load_image_crops_central_square_by_proportion(tmp_path, size, band):
    path = tmp_path / "x.png"
    banded(size, band).save(path)
    out = load_image(path, 16)
    assert out.dtype == torch.uint8 and out.shape == (3, 16, 16)
    assert out[0].max() <= 2 and out[1].min() >= 253  # the red bands are cropped away


def test_load_image_converts_grayscale(tmp_path):
    Image.new("L", (30, 40), 100).save(tmp_path / "g.jpg")
    assert load_image(tmp_path / "g.jpg", 8).shape == (3, 8, 8)


# bad input: each one line naming the file, line, argument

def test_missing_root(tmp_path):
    with pytest.raises(HPNetError, match=r"CelebA root folder not found: .*nowhere"):
        CelebA(tmp_path / "nowhere")


def test_missing_label_file(fake_celeba):
    (fake_celeba / "list_attr_celeba.txt").unlink()
    with pytest.raises(HPNetError, match=r"no CelebA label file in .*: looked for list_attr_celeba.txt "
                                         r"\(torchvision layout\) and list_attr_celeba.csv \(CSV layout\)"):
        CelebA(fake_celeba)


@pytest.mark.parametrize("layout", ["txt", "csv"])
def test_missing_partition_file(tmp_path, layout):
    base = make_fake_celeba(tmp_path, n=6, layout=layout)
    (base / f"list_eval_partition.{layout}").unlink()
    with pytest.raises(HPNetError, match=rf"missing partition file .*list_eval_partition.{layout} \(the {layout} layout"):
        CelebA(base)


def test_missing_image_folder(fake_celeba):
    shutil.rmtree(fake_celeba / "img_align_celeba")
    with pytest.raises(HPNetError, match=r"CelebA image folder not found: .*img_align_celeba"):
        CelebA(fake_celeba)


def test_missing_image_file(fake_celeba):
    ds = CelebA(fake_celeba)
    (fake_celeba / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(HPNetError, match=r"image file not found: .*000002.jpg"):
        ds[1]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_undecodable_image(fake_celeba, damage):
    path = fake_celeba / "img_align_celeba" / "000003.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a jpeg at all")
    with pytest.raises(HPNetError, match=r"cannot decode image .*000003.jpg"):
        CelebA(fake_celeba)[2]


@pytest.mark.parametrize("line, new, message", [
    (5, "000003.jpg" + " -1" * 39, r"list_attr_celeba.txt: line 5: expected an image name and 40 values, got 39 values"),
    (4, "000002.jpg  1  1  2" + "  1" * 37, r"list_attr_celeba.txt: line 4: column Attractive: label '2' is not -1, 0 or 1"),
    (3, "000001.jpg  1  x" + "  1" * 38, r"list_attr_celeba.txt: line 3: column Arched_Eyebrows: label 'x' is not a number"),
    (1, "25", r"list_attr_celeba.txt: the count line says 25 images but the file has 24 rows"),
    (1, "images", r"list_attr_celeba.txt: line 1: expected the image count, got 'images'"),
    (3, "../000001.jpg" + "  1" * 40, r"line 3: image name '../000001.jpg' is not a plain file name"),
])
def test_bad_attribute_file(fake_celeba, line, new, message):
    edit_line(fake_celeba / "list_attr_celeba.txt", line, new)
    with pytest.raises(HPNetError, match=message):
        CelebA(fake_celeba)


def test_bad_attribute_csv(fake_celeba_csv):
    path = fake_celeba_csv / "list_attr_celeba.csv"
    lines = path.read_text().split("\n")
    lines[2] = lines[2].rsplit(",", 1)[0] + ",yes"
    path.write_text("\n".join(lines))
    with pytest.raises(HPNetError, match=r"list_attr_celeba.csv: line 3: column Young: label 'yes' is not a number"):
        CelebA(fake_celeba_csv)


@pytest.mark.parametrize("line, new, message", [
    (24, "", r"list_eval_partition.txt: no partition for image 000024.jpg \(listed in list_attr_celeba.txt\)"),
    (2, "000002.jpg 3", r"list_eval_partition.txt: line 2: expected an image name and a partition 0, 1 or 2 "
                        r"\(train, valid, test\), got '000002.jpg 3'"),
])
def test_bad_partition_file(fake_celeba, line, new, message):
    edit_line(fake_celeba / "list_eval_partition.txt", line, new)
    with pytest.raises(HPNetError, match=message):
        CelebA(fake_celeba)


@pytest.mark.parametrize("kwargs, message", [
    ({"attributes": ["Smiling", "Smiley", "Foo"]},
     r"unknown attribute\(s\) Smiley, Foo \(not in .*list_attr_celeba.txt; it has 5_o_Clock_Shadow, "),
    ({"attributes": ["Male", "Male"]}, r"attributes must be distinct and non-empty, got \['Male', 'Male'\]"),
    ({"split": "validation"}, r"split must be 'train', 'valid', 'test', 'all' or a list of them, got 'validation'"),
    ({"split": []}, r"split must be .*, got \[\]"),
    ({"image_size": 0}, r"image_size must be a positive integer, got 0"),
    ({"max_images": 0}, r"max_images must be a positive integer or None, got 0"),
])
def test_bad_arguments(fake_celeba, kwargs, message):
    with pytest.raises(HPNetError, match=message):
        CelebA(fake_celeba, **kwargs)


# the real sample (skipped when absent)

def test_fake_files_match_the_real_format(celeba_sample, fake_celeba):
    real = (celeba_sample / "celeba" / "list_attr_celeba.txt").read_bytes().split(b"\n")
    fake = (fake_celeba / "list_attr_celeba.txt").read_bytes().split(b"\n")
    assert fake[1] == real[1]  # the header, trailing space and CR included
    row = rb"^\d{6}\.jpg (-1|1)( -1|  1){39}\r$"  # one space after the name, then width-2 values
    assert all(re.match(row, line) for line in real[2:12] + fake[2:-1]) and fake[-1] == real[-1] == b""
    partition = rb"^\d{6}\.jpg [012]\r$"
    assert re.match(partition, (celeba_sample / "celeba" / "list_eval_partition.txt").read_bytes().split(b"\n")[0])
    fake_partition = (fake_celeba / "list_eval_partition.txt").read_bytes().split(b"\n")
    assert all(re.match(partition, line) for line in fake_partition[:-1]) and fake_partition[-1] == b""


def test_real_sample(celeba_sample):
    ds = CelebA(celeba_sample, image_size=32, max_images=50, attributes=["Attractive", "Male", "Smiling", "Young"])
    assert len(ds) == 50 and ds.layout == "txt"
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    assert images.shape == (50, 3, 32, 32) and images.float().std() > 20
    raw = raw_labels(celeba_sample / "celeba")
    columns = [CELEBA_ATTRIBUTES.index(a) for a in ds.attribute_names]
    for row, name in [(0, "000001.jpg"), (9, "000010.jpg"), (49, "000050.jpg")]:
        assert ds.filenames[row] == name
        assert ds.targets[row].tolist() == [float(raw[name][c] == 1) for c in columns]
    assert ds.targets[0].tolist() == [1.0, 0.0, 1.0, 1.0]  # 000001.jpg: attractive, female, smiling, young
    held_out = CelebA(celeba_sample, split=["valid", "test"])  # the sample is all train
    assert len(held_out) == 0 and held_out.total == len(raw) == 10000
    assert held_out.attribute_names == CELEBA_ATTRIBUTES
