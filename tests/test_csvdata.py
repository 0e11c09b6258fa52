"""CSVDataset contract: lengths, splits, labels, paths kept inside the root, every bad input."""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pytest
import torch

from fakes import make_fake_csv_dataset
from hpnet.data.csvdata import CSVDataset
from hpnet.errors import HPNetError


def rows(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(newline="") as f:
        return list(csv.DictReader(f))


def edit_row(csv_path: Path, line: int, new: str) -> None:
    """Replace line ``line`` (1-based, the header is line 1)."""
    lines = csv_path.read_text().split("\n")
    lines[line - 1] = new
    csv_path.write_text("\n".join(lines))


@pytest.mark.parametrize("split, n", [("train", 16), ("valid", 4), ("test", 4), ("all", 24), (["train", "test"], 20)])
def test_lengths_per_split(fake_csv, split, n):
    assert len(CSVDataset(fake_csv, split=split)) == n


def test_splits_together_equal_all(fake_csv):
    parts = [CSVDataset(fake_csv, split=s) for s in ("train", "valid", "test")]
    whole = CSVDataset(fake_csv, split="all")
    assert sum((p.paths for p in parts), []) == whole.paths
    assert torch.equal(torch.cat([p.targets for p in parts]), whole.targets)


def test_items_and_labels_match_file(fake_csv):
    ds = CSVDataset(fake_csv, split="all", image_size=24)
    image, target = ds[5]
    assert image.dtype == torch.uint8 and image.shape == (3, 24, 24)  # 48x40 landscape, central 40x40
    assert target.dtype == torch.float32 and target.shape == (3,)
    assert ds.attribute_names == ["Smiling", "Male", "Young"] and ds.image_column == "image"
    expected = [[float(r[a]) for a in ds.attribute_names] for r in rows(fake_csv)]
    assert ds.targets.tolist() == expected
    assert ds.paths[5] == (fake_csv.parent / "images" / "005.jpg").resolve()


def test_attribute_subset_order_and_max_images(fake_csv):
    ds = CSVDataset(fake_csv, attributes=["Young", "Smiling"], max_images=3)
    assert ds.attribute_names == ["Young", "Smiling"] and len(ds) == 3
    assert ds.targets.tolist() == [[float(r["Young"]), float(r["Smiling"])] for r in rows(fake_csv)[:3]]


def test_without_split_column_every_row_is_train(tmp_path):
    path = make_fake_csv_dataset(tmp_path, n=6, with_split=False)
    assert len(CSVDataset(path)) == 6
    empty = CSVDataset(path, split="valid")
    assert len(empty) == 0 and empty.targets.shape == (0, 3)
    with pytest.raises(HPNetError, match=r"split valid of .*labels.csv has no images, 0 of 6 rows \(it has no split column"):
        empty.require_nonempty()


def test_minus_one_labels_numeric_splits_and_other_names(tmp_path, fake_csv):
    before = CSVDataset(fake_csv, split="all")
    text = fake_csv.read_text().replace(",0", ",-1").replace("train", "0").replace("valid", "1").replace("test", "2")
    other = tmp_path / "other.csv"
    other.write_text(text.replace("image,", "filename,", 1).replace("\n", "\r\n"))
    after = CSVDataset(other, root=fake_csv.parent, split="all")
    assert after.image_column == "filename" and after.paths == before.paths
    assert torch.equal(after.targets, before.targets)
    assert len(CSVDataset(other, root=fake_csv.parent, split="valid")) == 4


def test_explicit_image_column(tmp_path, fake_csv):
    other = tmp_path / "x.csv"
    other.write_text(fake_csv.read_text().replace("image,", "picture,", 1))
    ds = CSVDataset(other, root=fake_csv.parent, image_column="picture")
    assert len(ds) == 16 and ds.attribute_names == ["Smiling", "Male", "Young"]


# bad input

def test_missing_files_and_folders(tmp_path, fake_csv):
    with pytest.raises(HPNetError, match=r"CSV file not found: .*nope.csv"):
        CSVDataset(tmp_path / "nope.csv")
    with pytest.raises(HPNetError, match=r"image root folder not found: .*nowhere"):
        CSVDataset(fake_csv, root=tmp_path / "nowhere")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(HPNetError, match=r"empty.csv: empty file, expected a header row"):
        CSVDataset(tmp_path / "empty.csv")


def test_missing_image_column(fake_csv):
    edit_row(fake_csv, 1, "picture,Smiling,Male,Young,split")
    with pytest.raises(HPNetError, match=r"labels.csv: no image path column: expected one of image, path, file, "
                                         r"filename, image_id \(or pass image_column\); the header has picture, "):
        CSVDataset(fake_csv)
    with pytest.raises(HPNetError, match=r"labels.csv: image column 'img' is not in the header \(picture, Smiling"):
        CSVDataset(fake_csv, image_column="img")


def test_no_attribute_columns(tmp_path):
    (tmp_path / "a.csv").write_text("path,split\nx.jpg,train\n")
    with pytest.raises(HPNetError, match=r"a.csv: no attribute columns besides path, split"):
        CSVDataset(tmp_path / "a.csv")


@pytest.mark.parametrize("line, new, message", [
    (3, "images/001.jpg,1,yes,0,train", r"labels.csv: line 3: column Male: label 'yes' is not a number"),
    (4, "images/002.jpg,1,0,2,train", r"labels.csv: line 4: column Young: label '2' is not -1, 0 or 1"),
    (5, "images/003.jpg,1,,0,train", r"labels.csv: line 5: column Male: label '' is not a number"),
    (2, "images/000.jpg,1,0,train", r"labels.csv: line 2: expected 5 fields, got 4"),
    (25, "images/023.jpg,1,0,1,training", r"labels.csv: line 25: split 'training' is not train, valid or test \(or 0, 1, 2\)"),
    (2, "../outside.jpg,1,0,1,train", r"labels.csv: line 2: image path '../outside.jpg' resolves outside the data root"),
    (3, "/etc/hostname,1,0,1,train", r"labels.csv: line 3: image path '/etc/hostname' resolves outside the data root"),
    (2, ",1,0,1,train", r"labels.csv: line 2: empty image path"),
])
def test_bad_rows(fake_csv, line, new, message):
    edit_row(fake_csv, line, new)
    with pytest.raises(HPNetError, match=message):
        CSVDataset(fake_csv, split="all")


def test_bad_rows_are_found_in_other_splits_too(fake_csv):
    edit_row(fake_csv, 25, "images/023.jpg,1,0,7,test")
    with pytest.raises(HPNetError, match=r"line 25: column Young: label '7'"):
        CSVDataset(fake_csv, split="train")


def test_symlink_escaping_the_root(tmp_path, fake_csv):
    outside = tmp_path / "secret.jpg"
    outside.write_bytes((fake_csv.parent / "images" / "000.jpg").read_bytes())
    os.symlink(outside, fake_csv.parent / "images" / "link.jpg")
    edit_row(fake_csv, 2, "images/link.jpg,1,0,1,train")
    with pytest.raises(HPNetError, match=r"labels.csv: line 2: image path 'images/link.jpg' resolves outside the data root"):
        CSVDataset(fake_csv)


def test_unknown_attribute(fake_csv):
    with pytest.raises(HPNetError, match=r"unknown attribute\(s\) Happy \(not in .*labels.csv; it has Smiling, Male, Young\)"):
        CSVDataset(fake_csv, attributes=["Smiling", "Happy"])


def test_missing_and_undecodable_images(fake_csv):
    ds = CSVDataset(fake_csv)
    (fake_csv.parent / "images" / "000.jpg").unlink()
    (fake_csv.parent / "images" / "001.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(HPNetError, match=r"image file not found: .*images/000.jpg"):
        ds[0]
    with pytest.raises(HPNetError, match=r"cannot decode image .*images/001.jpg"):
        ds[1]


# labels are unambiguous or refused, naming file and line

def test_same_file_on_two_rows(fake_csv):
    edit_row(fake_csv, 6, "images/001.jpg,1,0,1,train")
    with pytest.raises(HPNetError, match=r"^.*labels\.csv: line 6: image path 'images/001\.jpg' names the same file as "
                                         r"line 3; each image must appear once$"):
        CSVDataset(fake_csv)


@pytest.mark.parametrize("alias", ["./images/001.jpg", "images/../images/001.jpg", "images//001.jpg",
                                   "images/alias.jpg"])
def test_same_file_under_another_name(fake_csv, alias):
    os.symlink("001.jpg", fake_csv.parent / "images" / "alias.jpg")
    edit_row(fake_csv, 25, f"{alias},1,0,1,test")  # a test row: refused whichever split is asked for
    with pytest.raises(HPNetError, match=rf"labels\.csv: line 25: image path {re.escape(repr(alias))} names the same "
                                         rf"file as line 3; each image must appear once$"):
        CSVDataset(fake_csv, split="train")


@pytest.mark.parametrize("header, message", [
    ("image,Smiling,Male,Smiling,split", r"line 1: 'Smiling' appears twice in the header \(columns 2 and 4\)$"),
    ("image,Smiling,Male,image,split", r"line 1: 'image' appears twice in the header \(columns 1 and 4\)$"),
    ("image,Smiling,split,Young,split", r"line 1: 'split' appears twice in the header \(columns 3 and 5\)$"),
    ("image,Smiling,Male,path,split",
     r"line 1: two image path columns, 'image' \(column 1\) and 'path' \(column 4\); pass image_column to pick one$"),
    ("image_id,Smiling,Male,Young,filename",
     r"line 1: two image path columns, 'image_id' \(column 1\) and 'filename' \(column 5\); pass image_column"),
    ("image,Smiling,,Young,split", r"line 1: column 3 of the header has no name$"),
])
def test_bad_header(fake_csv, header, message):
    edit_row(fake_csv, 1, header)
    with pytest.raises(HPNetError, match=r"labels\.csv: " + message):
        CSVDataset(fake_csv)


def test_image_column_picks_one_of_two(fake_csv):
    edit_row(fake_csv, 1, "image,Smiling,Male,path,split")
    ds = CSVDataset(fake_csv, image_column="image")
    assert ds.image_column == "image" and ds.attribute_names == ["Smiling", "Male", "path"]


def test_header_only(tmp_path):
    (tmp_path / "h.csv").write_text("\nimage,Smiling\n\n")
    with pytest.raises(HPNetError, match=r"h\.csv: no image rows after the header \(line 2\)$"):
        CSVDataset(tmp_path / "h.csv")


def test_nul_byte_in_image_path(fake_csv):
    edit_row(fake_csv, 4, "images/002.jpg\0,1,0,1,train")
    with pytest.raises(HPNetError, match=r"labels\.csv: line 4: a NUL byte; is this a damaged or binary file\?$"):
        CSVDataset(fake_csv)


def test_not_utf8_names_the_line(fake_csv):
    lines = fake_csv.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"images/", b"images/\xff")
    fake_csv.write_bytes(b"\n".join(lines))
    with pytest.raises(HPNetError, match=r"labels\.csv: line 3: not a text file \(invalid start byte at byte \d+\)$"):
        CSVDataset(fake_csv)


def test_unreadable_csv_names_the_line(fake_csv):
    edit_row(fake_csv, 3, "images/001.jpg," + "1" * 200_000 + ",0,1,train")
    with pytest.raises(HPNetError, match=r"labels\.csv: line 3: not a readable CSV file \(field larger than "):
        CSVDataset(fake_csv)
