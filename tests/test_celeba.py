"""CelebA dataset contract: fake folders in the exact real formats, every bad input, the real sample."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from fakes import CELEBA_ATTRIBUTES, fake_image, make_fake_celeba
from hpnet.data.celeba import CelebA, load_image
from hpnet.errors import HPNetError


def raw_labels(base: Path) -> dict[str, list[int]]:
    """An independent reading of list_attr_celeba.txt: image name -> its -1/1 values."""
    lines = (base / "list_attr_celeba.txt").read_bytes().decode().split("\r\n")
    return {t[0]: [int(v) for v in t[1:]] for t in (line.split() for line in lines[2:]) if t}


def edit_line(path: Path, number: int, new: str, newline: str = "\r\n") -> None:
    """Replace line ``number`` (1-based) of a CRLF file (or of an LF one: ``newline="\\n"``)."""
    lines = path.read_bytes().decode().split(newline)
    lines[number - 1] = new
    path.write_bytes(newline.join(lines).encode())


def line_of(path: Path, number: int, newline: str = "\r\n") -> str:
    return path.read_bytes().decode().split(newline)[number - 1]


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


# pixel modes: each becomes the right 8-bit RGB, or is refused in one line

def rgb_equivalent(image: Image.Image, rgb: np.ndarray) -> np.ndarray:  # (H, W, 3) uint8
    """The RGB pixels ``image`` stands for, worked out without ``convert``."""
    if image.mode == "P":
        return np.asarray(image.getpalette(), np.uint8).reshape(-1, 3)[np.asarray(image)]
    if image.mode in ("L", "LA", "1"):
        grey = np.asarray(image.getchannel(0)).astype(np.uint8) * (255 if image.mode == "1" else 1)
        return np.repeat(grey[..., None], 3, axis=2)
    return rgb  # RGBA (opaque), CMYK and YCbCr round-trip the RGB they were made from


@pytest.mark.parametrize("mode, suffix, tolerance", [
    ("RGBA", ".png", 0), ("P", ".png", 0), ("L", ".png", 0), ("LA", ".png", 0), ("1", ".png", 0),
    ("CMYK", ".tif", 0), ("YCbCr", ".tif", 3),
])
def test_load_image_modes_give_their_rgb_pixels(tmp_path, mode, suffix, tolerance):
    original = fake_image(np.random.default_rng(5), (30, 40))
    image = original.quantize(16) if mode == "P" else original.convert(mode)
    image.save(tmp_path / f"x{suffix}")
    with Image.open(tmp_path / f"x{suffix}") as saved:
        assert saved.mode == mode
    Image.fromarray(rgb_equivalent(image, np.asarray(original))).save(tmp_path / "rgb.png")
    got, expected = load_image(tmp_path / f"x{suffix}", 16), load_image(tmp_path / "rgb.png", 16)
    assert (got.int() - expected.int()).abs().max() <= tolerance


@pytest.mark.parametrize("mode, suffix", [("I;16", ".png"), ("I;16", ".tif"), ("I;16B", ".tif")])
def test_load_image_scales_16_bit_greyscale(tmp_path, mode, suffix):
    grey = np.asarray(fake_image(np.random.default_rng(6), (30, 40)).convert("L"))
    wide = grey.astype(">u2" if mode == "I;16B" else "<u2") * 257  # 8-bit v is 16-bit 257 v
    Image.frombytes(mode, (30, 40), wide.tobytes()).save(tmp_path / f"g16{suffix}")
    with Image.open(tmp_path / f"g16{suffix}") as saved:
        assert saved.mode == mode
    Image.fromarray(grey).save(tmp_path / "g8.png")
    assert torch.equal(load_image(tmp_path / f"g16{suffix}", 16), load_image(tmp_path / "g8.png", 16))


@pytest.mark.parametrize("value, expected", [(0, 0), (128, 0), (129, 1), (25700, 100), (30000, 117), (65535, 255)])
def test_load_image_16_bit_values(tmp_path, value, expected):
    Image.fromarray(np.full((10, 12), value, np.uint16)).save(tmp_path / "g16.png")
    assert load_image(tmp_path / "g16.png", 4).unique().tolist() == [expected]  # round(value * 255 / 65535)


def test_load_image_16_bit_png_opened_as_mode_i(tmp_path, monkeypatch):
    """Older Pillow opens a 16-bit greyscale PNG as mode I: it is scaled the same, not refused."""
    if (16, 0) not in getattr(PngImagePlugin, "_MODES", {}):
        pytest.skip("this Pillow maps PNG modes differently")
    monkeypatch.setitem(PngImagePlugin._MODES, (16, 0), ("I", "I;16B"))
    Image.fromarray(np.full((10, 12), 25700, np.uint16)).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as saved:
        assert saved.mode == "I"
    assert load_image(tmp_path / "g16.png", 4).unique().tolist() == [100]


@pytest.mark.parametrize("dtype, mode, kind", [(np.int32, "I", "32-bit integer"),
                                               (np.float32, "F", "32-bit floating point")])
def test_load_image_refuses_32_bit_modes(tmp_path, dtype, mode, kind):
    Image.fromarray(np.full((10, 12), 1000, dtype)).save(tmp_path / "deep.tif")
    with pytest.raises(HPNetError, match=rf"^cannot use image .*deep\.tif: pixel mode {mode} \({kind}\) is not "
                                         rf"supported; save it as 8-bit RGB or greyscale, or 16-bit greyscale$"):
        load_image(tmp_path / "deep.tif", 4)


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


# labels are unambiguous or refused, naming file and line

LAYOUT_LINES = {"txt": ("\r\n", 3, " "), "csv": ("\n", 2, ",")}  # line ends, line of the first image, separator


@pytest.mark.parametrize("layout", ["txt", "csv"])
def test_image_listed_twice_in_attribute_file(tmp_path, layout):
    base = make_fake_celeba(tmp_path, n=6, layout=layout)
    path, (newline, first, _) = base / f"list_attr_celeba.{layout}", LAYOUT_LINES[layout]
    edit_line(path, first + 4, line_of(path, first + 1, newline), newline)  # 000005.jpg's row: a copy of 000002.jpg's
    with pytest.raises(HPNetError, match=rf"^{re.escape(str(path))}: line {first + 4}: image 000002\.jpg is listed "
                                         rf"again \(first on line {first + 1}\); each image must appear once$"):
        CelebA(base)


def test_appended_copy_of_a_row_is_named_before_the_count(fake_celeba):
    path = fake_celeba / "list_attr_celeba.txt"
    path.write_bytes(path.read_bytes() + line_of(path, 7).encode() + b"\r\n")  # 25 rows, the count says 24
    with pytest.raises(HPNetError, match=r"list_attr_celeba\.txt: line 27: image 000005\.jpg is listed again \(first "
                                         r"on line 7\); each image must appear once$"):
        CelebA(fake_celeba)


@pytest.mark.parametrize("layout", ["txt", "csv"])
@pytest.mark.parametrize("code", ["0", "2"])  # the same partition again, or another one
def test_image_listed_twice_in_partition_file(tmp_path, layout, code):
    base = make_fake_celeba(tmp_path, n=6, layout=layout, partitions=(4, 1, 1))
    path, (newline, _, sep) = base / f"list_eval_partition.{layout}", LAYOUT_LINES[layout]
    first = 1 if layout == "txt" else 2
    edit_line(path, first + 5, f"000002.jpg{sep}{code}", newline)
    with pytest.raises(HPNetError, match=rf"^{re.escape(str(path))}: line {first + 5}: image 000002\.jpg is listed "
                                         rf"again \(first on line {first + 1}\); each image must have one partition$"):
        CelebA(base)


def test_partition_image_name_not_plain(fake_celeba):
    edit_line(fake_celeba / "list_eval_partition.txt", 3, "../000003.jpg 0")
    with pytest.raises(HPNetError, match=r"list_eval_partition\.txt: line 3: image name '\.\./000003\.jpg' is not a "
                                         r"plain file name$"):
        CelebA(fake_celeba)


def test_partition_csv_without_header(fake_celeba_csv):
    path = fake_celeba_csv / "list_eval_partition.csv"
    path.write_text(path.read_text().split("\n", 1)[1])
    with pytest.raises(HPNetError, match=r"list_eval_partition\.csv: line 1: expected the header image_id,partition, "
                                         r"got '000001\.jpg,0'$"):
        CelebA(fake_celeba_csv)


@pytest.mark.parametrize("layout, header, message", [
    ("txt", " ".join([*CELEBA_ATTRIBUTES[:-1], "Smiling"]) + " ",
     r"list_attr_celeba\.txt: line 2: 'Smiling' appears twice in the header \(names 32 and 40\)$"),
    ("csv", ",".join(["image_id", *CELEBA_ATTRIBUTES[:-1], "Smiling"]),
     r"list_attr_celeba\.csv: line 1: 'Smiling' appears twice in the header \(columns 33 and 41\)$"),
])
def test_attribute_named_twice(tmp_path, layout, header, message):
    base = make_fake_celeba(tmp_path, n=6, layout=layout)
    edit_line(base / f"list_attr_celeba.{layout}", 1 if layout == "csv" else 2, header, LAYOUT_LINES[layout][0])
    with pytest.raises(HPNetError, match=message):
        CelebA(base)


@pytest.mark.parametrize("count", ["\u00b2", "12a", "-3", "", "  ", "24.0", "\u0662\u0664", "0x18"])
def test_count_line_not_a_plain_integer(fake_celeba, count):
    edit_line(fake_celeba / "list_attr_celeba.txt", 1, count)
    with pytest.raises(HPNetError, match=rf"list_attr_celeba\.txt: line 1: expected the image count, "
                                         rf"got {re.escape(repr(count))}$"):
        CelebA(fake_celeba)


@pytest.mark.parametrize("line, new, message", [
    (2, " ".join(CELEBA_ATTRIBUTES[:-1]), r"line 2: the header names 39 attributes but line 3 has 40 values$"),
    (2, " ".join([*CELEBA_ATTRIBUTES, "Bearded"]), r"line 2: the header names 41 attributes but line 3 has 40 values$"),
    (3, "000001.jpg" + " -1" * 39, r"line 2: the header names 40 attributes but line 3 has 39 values$"),
    (4, "000002.jpg" + " -1" * 41, r"line 4: expected an image name and 40 values, got 41 values$"),
])
def test_header_and_row_widths(fake_celeba, line, new, message):
    edit_line(fake_celeba / "list_attr_celeba.txt", line, new)
    with pytest.raises(HPNetError, match=r"list_attr_celeba\.txt: " + message):
        CelebA(fake_celeba)


def test_header_width_csv_layout(fake_celeba_csv):
    edit_line(fake_celeba_csv / "list_attr_celeba.csv", 1, ",".join(["image_id", *CELEBA_ATTRIBUTES[1:]]), "\n")
    with pytest.raises(HPNetError, match=r"list_attr_celeba\.csv: line 1: the header names 39 attributes but line 2 "
                                         r"has 40 values$"):
        CelebA(fake_celeba_csv)


@pytest.mark.parametrize("name", ["list_attr_celeba", "list_eval_partition"])
@pytest.mark.parametrize("layout", ["txt", "csv"])
def test_nul_byte_in_label_file(tmp_path, layout, name):
    base = make_fake_celeba(tmp_path, n=6, layout=layout)
    path, newline = base / f"{name}.{layout}", LAYOUT_LINES[layout][0]
    edit_line(path, 4, line_of(path, 4, newline).replace(".jpg", ".jpg\0", 1), newline)
    with pytest.raises(HPNetError, match=rf"^{re.escape(str(path))}: line 4: a NUL byte; is this a damaged or binary "
                                         rf"file\?$"):
        CelebA(base)


def test_label_file_not_utf8_names_the_line(fake_celeba):
    path = fake_celeba / "list_attr_celeba.txt"
    lines = path.read_bytes().split(b"\r\n")
    lines[3] = lines[3].replace(b".jpg", b"\xe9.jpg")
    path.write_bytes(b"\r\n".join(lines))
    with pytest.raises(HPNetError, match=r"list_attr_celeba\.txt: line 4: not a text file \(invalid continuation byte "
                                         r"at byte \d+\)$"):
        CelebA(fake_celeba)


TXT_HEADER = " ".join(CELEBA_ATTRIBUTES) + " \r\n"
CSV_HEADER = ",".join(["image_id", *CELEBA_ATTRIBUTES]) + "\n"


@pytest.mark.parametrize("layout, content, message", [
    ("txt", "", r"list_attr_celeba\.txt: empty file, expected a count line, a header line of attribute names and a "
                r"row per image$"),
    ("txt", "\r\n\r\n", r"list_attr_celeba\.txt: line 1: expected the image count, got ''$"),
    ("txt", "24\r\n", r"list_attr_celeba\.txt: line 2: expected the header line of attribute names, got ''$"),
    ("txt", "24\r\n \r\n000001.jpg 1\r\n", r"line 2: expected the header line of attribute names, got ' '$"),
    ("txt", "0\r\n" + TXT_HEADER, r"list_attr_celeba\.txt: no image rows after the header \(line 2\)$"),
    ("txt", "24\r\n" + TXT_HEADER + "\r\n", r"list_attr_celeba\.txt: no image rows after the header \(line 2\)$"),
    ("csv", "", r"list_attr_celeba\.csv: empty file, expected the header image_id,5_o_Clock_Shadow,\.\.\.$"),
    ("csv", CSV_HEADER, r"list_attr_celeba\.csv: no image rows after the header \(line 1\)$"),
])
def test_empty_attribute_file(tmp_path, layout, content, message):
    base = make_fake_celeba(tmp_path, n=6, layout=layout)
    (base / f"list_attr_celeba.{layout}").write_bytes(content.encode())
    with pytest.raises(HPNetError, match=message):
        CelebA(base)


@pytest.mark.parametrize("layout, content", [("txt", ""), ("txt", "\r\n \r\n"), ("csv", ""),
                                             ("csv", "image_id,partition\n")])
def test_empty_partition_file(tmp_path, layout, content):
    base = make_fake_celeba(tmp_path, n=6, layout=layout)
    (base / f"list_eval_partition.{layout}").write_bytes(content.encode())
    example = re.escape(f"'000001.jpg{LAYOUT_LINES[layout][2]}0'")
    with pytest.raises(HPNetError, match=rf"list_eval_partition\.{layout}: no partition rows, expected one per image "
                                         rf"like {example}$"):
        CelebA(base)


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
